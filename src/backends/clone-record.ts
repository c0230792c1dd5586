/**
 * A deep copy of plain data (strings, numbers, booleans, null, undefined, arrays and plain
 * objects), which is all a session record holds. Several times cheaper than
 * `structuredClone`, which serializes; the session stores hand out copies on every
 * authenticated call, so callers can never change what the store holds.
 */
export function clonePlain<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map(clonePlain) as T;
  const out: Record<string, unknown> = {};
  for (const key in value as Record<string, unknown>) out[key] = clonePlain((value as Record<string, unknown>)[key]);
  return out as T;
}
