/**
 * safeFetch behind the WHATWG `fetch` signature, for a client library that
 * takes a `fetch` of its own (the openai and stripe clients): the same guard (public
 * addresses only unless allowed, checked at connect time and on every
 * redirect, at most `maxRedirects` hops, credentials dropped across origins),
 * the same timeouts and byte cap. The request body is read whole first (a
 * multipart upload the library built from buffers it already holds) and the
 * answer is buffered up to `maxBytes`, so nothing streams either way: fine
 * for request/response APIs, not for a streamed answer.
 */
import type { Agent } from 'undici';
import { guardedAgent, safeFetch } from './index.js';

export interface WebFetchOptions {
  /** Host names or IP literals that may be private (exact, case-insensitive). */
  allowedHosts: readonly string[];
  /** The answer's body may not be longer. */
  maxBytes: number;
  connectTimeoutMs?: number;
  /** Everything, redirects and body included; the library's own timeout (its abort) may come first. */
  totalTimeoutMs?: number;
  maxRedirects?: number;
}

/** A `fetch`; `Response` is the class its answers are, for libraries that check what a fetch supports. */
export type WebFetch = ((input: string | URL | Request, init?: RequestInit) => Promise<Response>) & { Response: typeof Response };

/** Statuses whose answer has no body: a Response cannot be made with one. */
const NULL_BODY = new Set([204, 205, 304]);

export function guardedWebFetch(options: WebFetchOptions): WebFetch {
  // One pool for the client's requests, made at the first: a client talks to one API, and a kept-alive
  // connection saves a TCP and TLS handshake per call (Stripe's while a buyer waits).
  let pool: Promise<Agent> | undefined;
  async function guardedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    // A Request settles what the body is (a FormData becomes multipart bytes with its boundary in Content-Type).
    const request = new Request(input, init);
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
    const headers = Object.fromEntries(request.headers);
    // The answer is handed on as the bytes came: ask for them unencoded.
    headers['accept-encoding'] = 'identity';
    const answer = await safeFetch(request.url, {
      ...options,
      method: request.method,
      headers,
      body,
      signal: init?.signal ?? request.signal,
      anyStatus: true,
      agent: await (pool ??= guardedAgent(options)),
    });
    return new Response(NULL_BODY.has(answer.status) ? null : answer.body, { status: answer.status, headers: answer.headers });
  }
  return Object.assign(guardedFetch, { Response });
}
