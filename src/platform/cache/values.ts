/** Value and TTL rules shared by both cache implementations, so they accept and reject the same things. */

export function ttlMilliseconds(ttlSeconds: number | undefined, fallbackSeconds: number): number {
  const seconds = ttlSeconds ?? fallbackSeconds;
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new RangeError(`cache TTL must be a positive number of seconds, got ${seconds}`);
  }
  return Math.max(1, Math.ceil(seconds * 1000));
}

/** JSON text of a value, refusing what JSON cannot carry back (undefined, functions). */
export function encodeValue(key: string, value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`cache value for "${key}" is not JSON-serialisable`);
  return text;
}
