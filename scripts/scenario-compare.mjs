// Compares the client scenario's results across languages (see test/scenario/README.md).
// Every language with a client must have written results; each must match the scenario's
// expectations and all must be identical. Writes "<passed> <failed> 0" to the file named by
// the first argument: one check per language, and one for the comparison.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";

const out = process.argv[2];
const dir = process.env.CAPVEND_SCENARIO_OUT ?? ".scenario-results";
const scenario = JSON.parse(readFileSync("test/scenario/scenario.json", "utf8"));
const clients = { typescript: "clients/typescript", python: "clients/python", go: "clients/go" };
const languages = Object.keys(clients).filter((l) => existsSync(`${clients[l]}/README.md`));

let passed = 0;
let failed = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  ok ? passed++ : failed++;
};

const results = {};
for (const language of languages) {
  const file = `${dir}/${language}.json`;
  if (!existsSync(file)) {
    check(false, `${language}: no results at ${file} (did its scenario driver run?)`);
    continue;
  }
  const observed = new Map(JSON.parse(readFileSync(file, "utf8")).results.map((r) => [r.id, r.observed]));
  const wrong = scenario.steps.filter((s) => !isDeepStrictEqual(observed.get(s.id), s.expect));
  for (const s of wrong) console.log(`     ${language} ${s.id}: expected ${JSON.stringify(s.expect)}, observed ${JSON.stringify(observed.get(s.id))}`);
  check(wrong.length === 0, `${language}: ${scenario.steps.length - wrong.length}/${scenario.steps.length} steps as expected`);
  results[language] = scenario.steps.map((s) => observed.get(s.id));
}
const seen = Object.keys(results);
if (languages.length > 0) {
  const same = seen.every((l) => isDeepStrictEqual(results[l], results[seen[0]]));
  check(seen.length === languages.length && same, `results identical across ${languages.join(", ")}`);
} else {
  console.log("no client has a README yet: nothing to compare");
}
writeFileSync(out, `${passed} ${failed} 0\n`);
process.exit(failed === 0 ? 0 : 1);
