/** Time source, injectable so tests can move time (token expiry, signed links). */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** ISO 8601 UTC with `Z`, the one time format of every answer and column. */
export function isoNow(clock: Clock): string {
  return clock.now().toISOString();
}
