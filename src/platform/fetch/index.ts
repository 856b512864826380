/**
 * safeFetch: every outbound HTTP request Kiln makes: the product database
 * (EAN_PROVIDER_URL) and image downloads, custom-order webhooks
 * (WEBHOOK_URL), the JWKS key set (JWT_JWKS_URL), and through
 * `guardedWebFetch` (web.ts) the clients that take a `fetch` of their own:
 * the image model (openai, OPENAI_BASE_URL) and Stripe (STRIPE_API_BASE).
 * Callers pass FETCH_ALLOWED_HOSTS as allowedHosts and nothing else: a
 * configured URL is not trusted by itself. Only http/https; only public
 * addresses unless the host is listed in allowedHosts; the address checked
 * is the address connected to (the check runs inside the socket's DNS
 * lookup, so a name cannot resolve once for the check and again for the
 * connection); redirects followed by hand and checked hop by hop; connect
 * and total timeouts; a byte cap enforced as the body arrives (arrival.ts,
 * which also keeps a slow reader from pausing undici's parser).
 */
import { Transform } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import { ipLiteral, isBlockedAddress } from './address.js';
import { arrivalCap, tooLarge } from './arrival.js';
import { streamToNewFile } from '../files.js';
import { storageFailureKind } from '../failures.js';
import { blockedAddress, FetchError, findFetchError, retryAfterMs } from './errors.js';
import { guardedLookup } from './lookup.js';

export { FetchError, findFetchError, retryAfterMs, type FetchErrorCode } from './errors.js';
export { isBlockedAddress } from './address.js';

export interface SafeFetchOptions {
  /** Host names or IP literals that may be private (exact, case-insensitive), e.g. FETCH_ALLOWED_HOSTS. */
  allowedHosts: readonly string[];
  /** The answer's body may not be longer (checked against Content-Length, then while reading). */
  maxBytes: number;
  connectTimeoutMs?: number;
  /** Everything, redirects and body included. */
  totalTimeoutMs?: number;
  maxRedirects?: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Stream the body into this (new) file instead of returning it; a partial file is removed. */
  toFile?: string;
  /** The caller's own abort (a job's signal); its reason is thrown as is. */
  signal?: AbortSignal;
  /**
   * Return an answer of any status, body included, instead of throwing
   * `http_status` for one outside 2xx (a client that reads error bodies
   * itself, such as the openai SDK through `guardedWebFetch`).
   */
  anyStatus?: boolean;
  /**
   * Read no body at all: answer as soon as the status and headers arrive and
   * destroy the body unread (a webhook, which needs only the status), so a
   * server that stalls its body cannot hold the request until the timeout.
   * `maxBytes` and `toFile` are then ignored; the answer's `bytes` is 0, its `body` null.
   */
  discardBody?: boolean;
  /**
   * A long-lived pool from `guardedAgent` (made with the same allowedHosts and
   * connect timeout) whose connections stay open between requests; it is not
   * closed after this one. Without it each request has a pool of its own.
   */
  agent?: Agent;
}

export interface SafeFetchResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Where the answer finally came from, after redirects. */
  url: string;
  bytes: number;
  /** null when the body went to `toFile` or was not read (`discardBody`). */
  body: Buffer | null;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * A connection pool whose every new connection goes through the guarded
 * lookup. A connection is checked when it opens, so keeping it open for the
 * next request to the same origin checks nothing less.
 */
export function guardedAgent(options: Pick<SafeFetchOptions, 'allowedHosts' | 'connectTimeoutMs'>): Promise<Agent> {
  return agentFor(allowedSet(options.allowedHosts), options.connectTimeoutMs);
}

async function agentFor(allowed: Set<string>, connectTimeoutMs = 5000): Promise<Agent> {
  // undici is loaded by the first outbound request, not at server start.
  const { Agent } = await import('undici');
  return new Agent({ connect: { timeout: connectTimeoutMs, lookup: guardedLookup(allowed) } });
}

const allowedSet = (hosts: readonly string[]): Set<string> => new Set(hosts.map((h) => h.toLowerCase()));

export async function safeFetch(url: string, options: SafeFetchOptions): Promise<SafeFetchResponse> {
  const allowed = allowedSet(options.allowedHosts);
  const deadline = AbortSignal.timeout(options.totalTimeoutMs ?? 30_000);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  const agent = options.agent ?? (await agentFor(allowed, options.connectTimeoutMs));
  try {
    return await follow(url, options, allowed, agent, signal);
  } catch (err) {
    if (options.signal?.aborted && !deadline.aborted) throw options.signal.reason;
    // The body could not be written here (a full disk): the server was reached, and is not to blame.
    if (isLocalWriteFailure(err)) throw err;
    throw toFetchError(err, deadline.aborted);
  } finally {
    // A request's own pool goes with it; a shared one keeps its connections for the next request.
    if (!options.agent) await agent.destroy().catch(() => undefined); // nothing left to release on failure
  }
}

async function follow(start: string, options: SafeFetchOptions, allowed: Set<string>, agent: Agent, signal: AbortSignal): Promise<SafeFetchResponse> {
  const maxRedirects = options.maxRedirects ?? 3;
  let method = (options.method ?? 'GET').toUpperCase();
  let body = options.body;
  let headers = { ...options.headers };
  let current = parseUrl(start);
  for (let hop = 0; ; hop++) {
    checkTarget(current, allowed);
    // An unread body has no cap to keep: it is dropped as soon as its headers are in.
    const cap = options.discardBody ? Number.POSITIVE_INFINITY : options.maxBytes;
    const res = await agent.compose(arrivalCap(cap)).request({ origin: current.origin, path: current.pathname + current.search, method, headers, body, signal });
    const location = res.headers.location;
    if (REDIRECTS.has(res.statusCode) && typeof location === 'string') {
      await release(res.body, options);
      if (hop >= maxRedirects) throw new FetchError('too_many_redirects', `More than ${maxRedirects} redirects.`);
      const next = parseUrl(location, current);
      // 303 (and 301/302 after a POST, as browsers do) turn into a GET without a body.
      if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
      }
      // Credentials meant for one origin are not handed to another.
      if (next.origin !== current.origin) headers = withoutCredentials(headers);
      current = next;
      continue;
    }
    if (!options.anyStatus && (res.statusCode < 200 || res.statusCode > 299)) {
      await release(res.body, options);
      const wait = res.headers['retry-after'];
      throw new FetchError('http_status', `The server answered ${res.statusCode}.`, res.statusCode, retryAfterMs(Array.isArray(wait) ? wait[0] : wait));
    }
    if (options.discardBody) {
      discard(res.body);
      return { status: res.statusCode, headers: flatHeaders(res.headers), url: current.toString(), bytes: 0, body: null };
    }
    return readBody(res, current.toString(), options);
  }
}

function parseUrl(text: string, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(text, base);
  } catch {
    throw new FetchError('bad_url', 'Not a valid URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchError('bad_scheme', `Only http and https are fetched, not ${url.protocol}`);
  return url;
}

/** IP literals never reach the lookup, so they are checked here; names are checked at connect time. */
function checkTarget(url: URL, allowed: Set<string>): void {
  const host = url.hostname.toLowerCase();
  const ip = ipLiteral(host);
  if (ip !== null && !allowed.has(host) && !allowed.has(ip) && isBlockedAddress(ip)) {
    throw blockedAddress(host);
  }
}

function withoutCredentials(headers: Record<string, string>): Record<string, string> {
  const secret = new Set(['authorization', 'cookie', 'proxy-authorization', 'x-api-key']);
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !secret.has(k.toLowerCase())));
}

function flatHeaders(raw: Dispatcher.ResponseData['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

async function readBody(res: Dispatcher.ResponseData, url: string, options: SafeFetchOptions): Promise<SafeFetchResponse> {
  const headers = flatHeaders(res.headers);
  const declared = Number(headers['content-length']);
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    discard(res.body);
    throw tooLarge(options.maxBytes);
  }
  // The cap itself is kept as the bytes arrive (arrivalCap): past it the request is aborted and the body fails.
  let bytes = 0;
  if (options.toFile) {
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    await streamToNewFile(res.body, counter, options.toFile);
    return { status: res.statusCode, headers, url, bytes, body: null };
  }
  const chunks: Buffer[] = [];
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    chunks.push(chunk);
  }
  return { status: res.statusCode, headers, url, bytes, body: Buffer.concat(chunks) };
}

/** Ends a body nobody reads: drained (bounded) to keep the connection, or with `discardBody` dropped at once. */
async function release(body: Dispatcher.ResponseData['body'], options: SafeFetchOptions): Promise<void> {
  if (options.discardBody) discard(body);
  else await body.dump();
}

/** Drops an unread body; undici reports the drop as an error nobody needs to hear. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** What writing a body to a file (`toFile`) may meet on this machine's disk (a storage failure, or EIO), none of it the server's doing. */
function isLocalWriteFailure(err: unknown): boolean {
  if (!(err instanceof Error) || (err as { syscall?: unknown }).syscall === 'connect') return false;
  return storageFailureKind(err) !== undefined || (err as { code?: unknown }).code === 'EIO';
}

function toFetchError(err: unknown, timedOut: boolean): FetchError {
  const ours = findFetchError(err);
  if (ours) return ours;
  if (timedOut) return new FetchError('timeout', 'The request took too long.');
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return new FetchError('timeout', 'The request took too long.');
  return new FetchError('unreachable', `Could not reach the server${typeof code === 'string' ? ` (${code})` : ''}.`);
}
