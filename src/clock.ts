/** Time source, injectable so tests can move time (token expiry, signed links). */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** ISO 8601 UTC with `Z`, the one time format of every answer and column. */
export function isoNow(clock: Clock): string {
  return clock.now().toISOString();
}

/** The instant `ms` before now, in the same format: the cut-off of a sweep ("finished before …"). */
export function isoAgo(clock: Clock, ms: number): string {
  return new Date(clock.now().getTime() - ms).toISOString();
}
