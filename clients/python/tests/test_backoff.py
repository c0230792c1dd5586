"""Backoff with full jitter: bounds, growth, cap, reset and bad settings."""

from __future__ import annotations

import pytest

from capvend import Backoff, full_jitter_delay


def test_delay_is_rnd_times_a_cap_that_doubles_up_to_the_maximum() -> None:
    assert full_jitter_delay(0, 1.0, initial=0.1, maximum=5.0) == pytest.approx(0.1)
    assert full_jitter_delay(1, 1.0, initial=0.1, maximum=5.0) == pytest.approx(0.2)
    assert full_jitter_delay(3, 0.5, initial=0.1, maximum=5.0) == pytest.approx(0.4)
    assert full_jitter_delay(10, 1.0, initial=0.1, maximum=5.0) == pytest.approx(5.0)
    assert full_jitter_delay(10_000, 1.0, initial=0.1, maximum=5.0) == pytest.approx(5.0)


def test_full_jitter_spans_zero_to_the_cap() -> None:
    assert full_jitter_delay(4, 0.0) == 0.0
    delays = [full_jitter_delay(4, r / 10) for r in range(11)]
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(1.6)


def test_backoff_counts_failures_and_reset_makes_the_next_delay_short() -> None:
    b = Backoff(initial=0.1, maximum=1.0, random=lambda: 1.0)
    assert [round(b.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == pytest.approx(0.1)


def test_real_randomness_stays_within_the_cap() -> None:
    b = Backoff(initial=0.1, maximum=0.4)
    for attempt in range(50):
        cap = min(0.4, 0.1 * 2**attempt)
        assert 0.0 <= b.next_delay() <= cap


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 2.0, "maximum": 1.0}, {"multiplier": 0.5}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        full_jitter_delay(-1, 0.5)
    with pytest.raises(ValueError):
        full_jitter_delay(0, 1.5)
