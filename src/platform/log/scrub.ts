/**
 * Secret scrubbing for log lines. pino's `redact` only knows fixed paths;
 * a credential can also arrive nested anywhere in an error object (a
 * client's request config, a response body) or inside a string (an error
 * message quoting a header or a form body). So every logged value is walked:
 * a value under a secret-sounding key is replaced, and strings lose bearer
 * tokens, JWTs and `password=…`-style pairs.
 */
import type { IncomingMessage } from 'node:http';
import pino from 'pino';

export const CENSOR = '[redacted]';

/** Keys whose value is a credential, wherever they appear (headers, bodies, error properties). */
const SECRET_KEY =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api[-_]?key|key|jwt|credentials?)$|pass(word|wd|phrase)|secret|token/i;

/** Keys that carry a raw request or response payload: as strings they may hold anything, so they are left out. */
const PAYLOAD_KEY = /^(body|raw_?body|request_?body|response_?body|payload)$/i;

const BEARER = /\b(Bearer|Basic|Token)\s+([A-Za-z0-9._~+/=-]+)/gi;
/**
 * What follows "token" when it is a word of a sentence ("refresh token
 * reused", "Token expired"): letters only, lowercase past the first, shorter
 * than any credential. Bearer and Basic are left strict: they are HTTP
 * schemes, and a Basic credential can be letters only. A token with a digit,
 * a symbol, capitals inside or 20 letters or more is still taken.
 */
const PLAIN_WORD = /^[A-Za-z][a-z]{0,18}$/;

function scrubSchemes(text: string): string {
  return text.replace(BEARER, (match: string, scheme: string, value: string) =>
    scheme.toLowerCase() === 'token' && PLAIN_WORD.test(value) ? match : `${scheme} ${CENSOR}`,
  );
}
const JWT = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
/**
 * Secret keys by their well-known shape, wherever they stand in free text:
 * OpenAI's (`sk-…`, `sk-proj-…`, masked or whole, as a provider's error may
 * quote them), Stripe's (`sk_live_…`, `rk_test_…`, `whsec_…`).
 */
const SECRET_KEY_SHAPE = /\b(?:(?:sk|rk)[-_][A-Za-z0-9_*.\u2026-]{8,}|whsec_[A-Za-z0-9]{8,})/g;
/** `password=x`, `"token": "x"`, `api_key: x` inside free text (a message, a query string, a form body). */
const PAIR =
  /(\b[a-z_-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|authorization|cookie)["']?\s*[:=]\s*)(\[redacted\]|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,&;}\]]+)/gi;

const MAX_DEPTH = 8;

/** Stands in for a payload string; a second pass over it (error serializer after the field walk) keeps it. */
function omitted(text: string): string {
  return /^\[omitted \d+ chars\]$/.test(text) ? text : `[omitted ${text.length} chars]`;
}

/** Removes credentials from free text. Idempotent: a scrubbed text passes through unchanged. */
export function scrubString(text: string): string {
  if (text.length === 0) return text;
  return scrubSchemes(text)
    .replace(JWT, CENSOR)
    .replace(SECRET_KEY_SHAPE, CENSOR)
    .replace(PAIR, (_m, head: string, value: string) => {
      const quote = value.startsWith('"') || value.startsWith("'") ? value[0] : '';
      return `${head}${quote}${CENSOR}${quote}`;
    });
}

/**
 * Only bearer tokens and JWTs: the line-level pass over the finished JSON
 * line, where a `key: value` pattern could match across field boundaries.
 */
export function scrubLine(line: string): string {
  return scrubSchemes(line).replace(JWT, CENSOR);
}

/** A copy of `value` with every credential replaced; JSON-like output (what the line will hold anyway). */
export function scrubValue(value: unknown, depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return scrubString(value);
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return serializeError(value, depth, seen);
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[binary ${value.byteLength} bytes]`;
  if (seen.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[too deep]';
  seen.add(value);
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return scrubValue(toJSON.call(value), depth + 1, seen);
  if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1, seen));
  return scrubFields(value as Record<string, unknown>, new Set(), depth, seen);
}

/** The fields of one object scrubbed; fields named in `keepAsIs` are left for their own serializer. */
export function scrubFields(
  fields: Record<string, unknown>,
  keepAsIs: ReadonlySet<string>,
  depth = 0,
  seen: WeakSet<object> = new WeakSet(),
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(fields)) {
    if (keepAsIs.has(key)) out[key] = item;
    else if (SECRET_KEY.test(key) && item !== undefined && item !== null) out[key] = CENSOR;
    else if (PAYLOAD_KEY.test(key) && typeof item === 'string') out[key] = omitted(item);
    else out[key] = scrubValue(item, depth + 1, seen);
  }
  return out;
}

/** pino's error shape (type, message, stack, own properties, cause) with every credential removed. */
export function serializeError(err: unknown, depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (!(err instanceof Error)) return scrubValue(err, depth, seen);
  if (seen.has(err)) return '[circular]';
  seen.add(err);
  return scrubValue(pino.stdSerializers.err(err), depth, seen);
}

/**
 * A request as a log field: method and path only. Headers and query strings
 * are where credentials travel, so they never become part of a line.
 */
export function serializeRequest(req: unknown): unknown {
  const r = req as Partial<IncomingMessage> & { id?: unknown; raw?: IncomingMessage };
  const raw = r.raw ?? r;
  return { method: raw.method, url: typeof raw.url === 'string' ? raw.url.split('?')[0] : undefined, id: r.id };
}

export function serializeResponse(res: unknown): unknown {
  const r = res as { statusCode?: unknown; raw?: { statusCode?: unknown } };
  return { statusCode: r.statusCode ?? r.raw?.statusCode };
}
