/** Why an outbound request did not give a usable answer; `code` is stable, handlers switch on it. */
export type FetchErrorCode =
  | 'bad_url'
  | 'bad_scheme'
  | 'blocked_address'
  | 'too_many_redirects'
  | 'timeout'
  | 'too_large'
  | 'unreachable'
  | 'http_status';

export class FetchError extends Error {
  constructor(
    readonly code: FetchErrorCode,
    message: string,
    /** The answer's HTTP status, for `http_status`. */
    readonly status?: number,
    /** How long the server asked us to wait before asking again (its Retry-After), for `http_status`. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'FetchError';
  }

  /** Worth retrying later: the network or the server may do better next time (timeouts, 5xx, 408, 429). */
  get transient(): boolean {
    if (this.code === 'timeout' || this.code === 'unreachable') return true;
    if (this.code === 'http_status' && this.status !== undefined) return this.status >= 500 || this.status === 408 || this.status === 429;
    return false;
  }
}

/**
 * A Retry-After header's wait in milliseconds: delta-seconds or an HTTP date
 * (RFC 9110 10.2.3); undefined when absent or not one of those. A date in
 * the past is no wait.
 */
export function retryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The one way the guard refuses an address, naming the setting that would allow it. */
export function blockedAddress(what: string): FetchError {
  return new FetchError('blocked_address', `${what} is not a public address; a private or loopback host is reached only when it is listed in FETCH_ALLOWED_HOSTS.`);
}

/** Our FetchError when `err` is one or wraps one (undici wraps connect failures), else null. */
export function findFetchError(err: unknown): FetchError | null {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof FetchError) return e;
  }
  return null;
}
