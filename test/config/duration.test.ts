import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../src/config/duration.js";

describe("parseDuration", () => {
  it.each([
    ["90s", 90_000],
    ["15m", 15 * 60_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["1m30s", 90_000],
    ["2h15m10s500ms", 2 * 3_600_000 + 15 * 60_000 + 10_000 + 500],
    ["1d", 86_400_000],
    ["1.5h", 5_400_000],
    ["0.5s", 500],
    ["0s", 0],
    ["  15m  ", 15 * 60_000],
  ])("%s → %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ["900", "a bare number: the unit is mandatory"],
    ["0", "a bare zero"],
    ["", "empty"],
    ["   ", "blank"],
    ["-5s", "negative"],
    ["5", "bare number"],
    ["1.5", "bare decimal"],
    ["1 h", "space between number and unit"],
    ["1h 30m", "space between parts"],
    ["1H", "upper-case unit"],
    ["15min", "unknown unit"],
    ["1w", "unknown unit w"],
    ["h", "unit without a number"],
    ["1h30", "trailing bare number"],
    [".5s", "no leading digit"],
    ["5s!", "trailing junk"],
    ["PT15M", "ISO-8601"],
    ["1e3ms", "exponent"],
  ])("rejects %j (%s)", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe("formatDuration", () => {
  it.each([
    [0, "0s"],
    [250, "250ms"],
    [90_000, "1m30s"],
    [5_400_000, "1h30m"],
    [3_600_000, "1h"],
    [3_600_000 + 1, "1h1ms"],
  ])("%d ms → %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("round-trips through parseDuration", () => {
    for (const ms of [1, 999, 1000, 61_001, 15 * 60_000, 8 * 3_600_000, 26 * 3_600_000 + 7]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});
