import { KeyFileError, readPrivateKeyPem } from "./pem-file.js";
import { toSigningKey, type SigningAlg, type SigningKey } from "./signing-key.js";

/**
 * Loads operator-supplied PEM PKCS#8 keys. The first file is the signing key and must match
 * `alg`; the rest only verify, retired at `now` so they stay published for one more maximum
 * token lifetime (rotate by putting the new file first and restarting). Throws `KeyFileError`.
 */
export async function loadKeyFiles(paths: readonly string[], alg: SigningAlg, now: number): Promise<SigningKey[]> {
  if (paths.length === 0) throw new TypeError("keyFiles must name at least one file");
  const keys: SigningKey[] = [];
  const seen = new Map<string, string>();
  for (const [i, path] of paths.entries()) {
    const key = toSigningKey(await readPrivateKeyPem(path), now, i === 0 ? undefined : now);
    if (i === 0 && key.alg !== alg) {
      throw new KeyFileError(path, `is an ${key.alg} key but the configured signing alg is ${alg}`);
    }
    const earlier = seen.get(key.kid);
    if (earlier !== undefined) throw new KeyFileError(path, `holds the same key as ${earlier}`);
    seen.set(key.kid, path);
    keys.push(key);
  }
  // Oldest first, the current (first-listed) key last, as the key ring keeps them.
  return [...keys.slice(1).reverse(), keys[0]!];
}
