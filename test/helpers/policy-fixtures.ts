import { cp, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DEFAULT_POLICY_DIR } from "../../src/config/config.js";

/**
 * A fresh copy of the example policy directory with `files` (name → Cedar text) added, for
 * tests that need one more rule beside the shipped ones. The caller removes it.
 */
export async function examplePolicyPlus(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "capvend-policy-"));
  await cp(DEFAULT_POLICY_DIR, dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
}

/** Any agent may have any scope on any resource when its session is labelled `limits` (limit tests). */
export const LIMITS_LABEL_POLICY = {
  "limits.cedar": '@id("limits-test") permit (principal, action, resource is Resource) when { context has labels && context.labels has limits };\n',
};
