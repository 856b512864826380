/**
 * The one error handler: every failure leaves as application/problem+json
 * (RFC 9457) with `detail` and a stable `code`. Unknown errors become a 500
 * whose detail hides internals; the log keeps the real cause.
 */
import { METHODS, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, type FieldError } from '../../errors.js';
import { isDatabaseConnectionLost } from '../db/failures.js';
import { causeChain, storageFailureKind, type StorageFailureKind } from '../failures.js';
import { drainUnreadBody, readOutBound } from './drain.js';
import { isHostValue } from './request-head.js';
import { UNMATCHED } from './requests.js';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  [member: string]: unknown;
}

export function problem(status: number, code: string, detail: string, extra: Record<string, unknown> = {}): Problem {
  return {
    type: `urn:kiln:problem:${code}`,
    title: STATUS_CODES[status] ?? 'Error',
    status,
    detail,
    code,
    ...extra,
  };
}

/** Known Fastify / plugin error codes, mapped to the contract's statuses and codes. */
const FASTIFY_CODES: Record<string, { status: number; code: string; detail: string }> = {
  FST_REQ_FILE_TOO_LARGE: { status: 413, code: 'file_too_large', detail: 'The file is larger than the upload limit.' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large', detail: 'The request body is too large.' },
  FST_FILES_LIMIT: { status: 422, code: 'too_many_files', detail: 'Too many files in one request.' },
  FST_PARTS_LIMIT: { status: 413, code: 'too_many_parts', detail: 'Too many parts in the multipart body.' },
  FST_FIELDS_LIMIT: { status: 413, code: 'too_many_fields', detail: 'Too many fields in the multipart body.' },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { status: 415, code: 'not_multipart', detail: 'Send the upload as multipart/form-data.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type', detail: 'This content type is not accepted here.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid_json', detail: 'The body is not valid JSON.' },
  FST_INVALID_JSON_FIELD_ERROR: { status: 422, code: 'validation_error', detail: 'A multipart field declared as application/json is not valid JSON.' },
  FST_PROTO_VIOLATION: { status: 400, code: 'malformed_multipart', detail: 'A multipart field name is not allowed.' },
  FST_MP_PREMATURE_CLOSE: { status: 400, code: 'malformed_multipart', detail: 'The multipart body ended before it was complete.' },
  // Met before routing (Fastify's frameworkErrors, below).
  FST_ERR_BAD_URL: { status: 400, code: 'bad_url', detail: 'The URL is not valid: a % must be followed by two hex digits that make UTF-8.' },
  FST_ERR_MAX_PARAM_LENGTH: { status: 414, code: 'uri_too_long', detail: 'A part of the URL path is longer than 100 characters.' },
};

/**
 * busboy's parse failures carry no code, only these messages: a body that is
 * not the multipart/form-data it says it is (no boundary, cut short). They
 * are the client's, not a 500.
 */
const MALFORMED_MULTIPART = /^Multipart: Boundary not found$|unexpected end of multipart data$/i;

type ValidationIssue = NonNullable<FastifyError['validation']>[number];

/**
 * A choice among fixed values (a union of literals, such as `size`) fails
 * once per value and once as a whole: that is one error, naming the choices.
 */
function mergeChoices(issues: readonly ValidationIssue[]): ValidationIssue[] {
  const choicesOf = (anyOf: ValidationIssue): ValidationIssue[] => issues.filter((v) => v.keyword === 'const' && v.schemaPath.startsWith(`${anyOf.schemaPath}/`));
  const merged = new Set<ValidationIssue>();
  const out: ValidationIssue[] = [];
  for (const v of issues) {
    if (v.keyword !== 'anyOf') continue;
    const choices = choicesOf(v);
    if (choices.length === 0) continue;
    for (const c of choices) merged.add(c);
    const allowed = choices.map((c) => JSON.stringify((c.params as { allowedValue?: unknown }).allowedValue)).join(', ');
    merged.add(v);
    out.push({ ...v, message: `must be one of ${allowed}` });
  }
  return [...issues.filter((v) => !merged.has(v)), ...out];
}

function fieldErrors(error: FastifyError): FieldError[] {
  return mergeChoices(error.validation ?? []).map((v) => {
    const where = error.validationContext ?? 'body';
    const params = v.params as { missingProperty?: string; additionalProperty?: string } | undefined;
    const pathPart = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
    // A field the schema does not take is named, so the client knows which one to drop.
    const named = params?.missingProperty ?? params?.additionalProperty;
    const field = [where, pathPart, named].filter((s) => s !== undefined && s !== '').join('.');
    const message = params?.additionalProperty !== undefined ? 'is not a field this request takes' : (v.message ?? 'is invalid');
    return { field, message };
  });
}

/** A plugin's own 4xx with no code of ours: the status's name as a code (403 `forbidden`, 405 `method_not_allowed`). */
function statusCode(status: number): string {
  return (STATUS_CODES[status] ?? 'Bad Request').toLowerCase().replace(/[^a-z0-9]+/g, '_');
}

/**
 * Node's error on a request whose client closed the connection (or that its
 * request timeout ended) before the body had all arrived. Matched exactly:
 * an outbound call's reset says `read ECONNRESET` or `socket hang up`.
 */
function clientWentAway(error: FastifyError): boolean {
  return error.code === 'ECONNRESET' && error.message === 'aborted';
}

export function toProblem(error: unknown): Problem {
  if (error instanceof DomainError) return problem(error.status, error.code, error.detail, error.extra);
  const fe = error as FastifyError;
  // Nobody is left to read the answer; the code keeps it out of the 5xx logs and counts.
  if (clientWentAway(fe)) return problem(400, 'client_aborted', 'The client closed the connection before the request was complete.');
  if (fe.validation) {
    const errors = fieldErrors(fe);
    const first = errors[0];
    const detail = first ? `${first.field} ${first.message}.` : 'The request is not valid.';
    return problem(422, 'validation_error', detail, { errors });
  }
  const known = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (known) return problem(known.status, known.code, known.detail);
  if (!fe.code && !fe.statusCode && MALFORMED_MULTIPART.test(fe.message ?? '')) {
    return problem(400, 'malformed_multipart', 'The multipart/form-data body is malformed or cut short.');
  }
  const storage = storageFailure(error);
  if (storage) return storage;
  if (fe.statusCode === 429) return problem(429, 'rate_limited', 'Too many requests; try again later.');
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
    return problem(fe.statusCode, statusCode(fe.statusCode), fe.message || 'The request is not valid.');
  }
  return problem(500, 'internal_error', 'Something went wrong on our side; it has been logged.');
}

/**
 * A disk or database that cannot take the write (full, over quota, mounted
 * read-only) or a database connection lost under the request (a restart, a
 * proxy dropping it): a 503 that says so, for the client and for whoever
 * reads the answer, where a 500 would say nothing. The cause is logged like
 * any 5xx. Looked for on the error and its causes.
 */
function storageFailure(error: unknown): Problem | undefined {
  for (const e of causeChain(error)) {
    if (isDatabaseConnectionLost(e)) {
      return problem(503, 'database_unavailable', 'The database connection was lost while this request was being answered; try again shortly.');
    }
    const kind = storageFailureKind(e);
    if (kind) return STORAGE_PROBLEMS[kind]();
  }
  return undefined;
}

/** The 503 of each kind of storage failure (platform/failures.ts). */
const STORAGE_PROBLEMS: Record<StorageFailureKind, () => Problem> = {
  full: () => problem(503, 'storage_full', 'The server has no room left to store this; try again once space has been freed.'),
  read_only: () => problem(503, 'storage_read_only', 'The server\'s storage is read-only at the moment; nothing can be stored.'),
  not_writable: () => problem(503, 'storage_not_writable', 'The server may not use its storage at the moment (its permissions changed); nothing was stored.'),
};

/** 401 codes for a bearer token that was sent but will not do: malformed, signed by another key, expired, revoked. */
const BAD_TOKEN_CODES = new Set(['invalid_token', 'token_expired', 'token_revoked']);

/** The codes of storageFailure's answers. */
const OUTAGE_CODES = new Set(['database_unavailable', 'storage_full', 'storage_read_only', 'storage_not_writable']);

/** An error and its causes as one line: `Error: message <- ErrnoException(ECONNREFUSED): message`. */
function causeLine(error: unknown): string {
  return causeChain(error)
    .map((e) => {
      const code = (e as { code?: unknown }).code;
      return `${e.name}${typeof code === 'string' ? `(${code})` : ''}: ${e.message}`;
    })
    .join(' <- ');
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.status(p.status).type('application/problem+json').send(p);
}

/** Sends a failure in a module's own format (the AI-edit envelope) rather than as problem+json. */
export type FailureFormat = (reply: FastifyReply, p: Problem) => FastifyReply;

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The failure formats of the paths whose routes answer errors in a format of
 * their own. The routes' error handler sees only failures inside a route; a
 * failure that meets no route of the path (a method it does not take, 405;
 * a path part too long to route, 414) is answered here, in the format of the
 * routes the path has. Every other path keeps problem+json.
 */
export class FailureFormats {
  private readonly formats: Array<{ pattern: RegExp; send: FailureFormat }> = [];

  /** `url` as a route declares it: `/api/v1/files/:file_id`. */
  add(url: string, send: FailureFormat): void {
    const source = url
      .replace(/\/+$/, '')
      .split('/')
      .map((part) => (part.startsWith(':') ? '[^/]+' : escapeRegExp(part)))
      .join('/');
    this.formats.push({ pattern: new RegExp(`^${source}/?$`), send });
  }

  /** The format of a request's path (without its query): problem+json unless a route of the path says otherwise. */
  of(path: string): FailureFormat {
    return this.formats.find((f) => f.pattern.test(path))?.send ?? sendProblem;
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's one FailureFormats, shared by every scope. */
    failureFormats: FailureFormats;
  }
}

/** Headers a route may have set for the success it was preparing (a stored image's, images/serve.ts). */
const SUCCESS_ONLY_HEADERS = ['etag', 'last-modified', 'accept-ranges', 'content-length'] as const;

/**
 * An error is never cached nor revalidated as the answer it replaces: a
 * failed image read must not leave with the image's ETag and a year-long
 * `immutable`. Only a 416 keeps its Content-Range, which tells the file's length.
 */
function clearSuccessHeaders(reply: FastifyReply, status: number): void {
  for (const name of SUCCESS_ONLY_HEADERS) reply.removeHeader(name);
  if (status !== 416) reply.removeHeader('content-range');
  reply.header('cache-control', 'no-store');
}

/**
 * Classifies a failure, logs and counts it, sets Retry-After and clears what
 * was set for a success; the caller only chooses the body's shape
 * (problem+json here, a module's own envelope in a module's scoped handler).
 * Resolves once the request's unread body, if any, has been read out
 * (drain.ts): the answer goes after it.
 */
export async function recordFailure(error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<Problem> {
  const p = toProblem(error);
  clearSuccessHeaders(reply, p.status);
  // A 5xx Kiln answers on purpose for a state it knows (payments not configured, COLMAP missing) says all in
  // its code and detail: a warning, without a stack on every request. One with a cause, or any other error, is
  // a failure to look into.
  if (p.status >= 500 && error instanceof DomainError && error.cause === undefined) request.log.warn({ code: p.code, detail: p.detail }, 'request failed');
  // An outage (a full disk, a database gone) fails every request while it lasts: its cause in a line, not a stack each.
  else if (OUTAGE_CODES.has(p.code)) request.log.warn({ code: p.code, cause: causeLine(error) }, 'request failed');
  else if (p.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.debug({ code: p.code }, 'request rejected');
  const { ctx } = request.server;
  ctx.metrics.httpErrors.inc({ route: request.routeOptions.url ?? UNMATCHED, code: p.code });
  // Every 401 names the scheme that would do (RFC 9110 15.5.2), and says when the token sent was the trouble (RFC 6750 3.1).
  if (p.status === 401) reply.header('www-authenticate', BAD_TOKEN_CODES.has(p.code) ? 'Bearer realm="kiln", error="invalid_token"' : 'Bearer realm="kiln"');
  // A refusal that knows when to come back (429 rate_limited, 503 database_busy) says so.
  const retry = (error as { retryAfterSeconds?: number }).retryAfterSeconds;
  if (error instanceof DomainError && retry !== undefined) reply.header('retry-after', String(retry));
  // An upload refused before its body was read: read it out so the client gets this answer.
  await drainUnreadBody(request, reply, readOutBound(ctx.config, request.routeOptions.config.mostFiles));
  return p;
}

export async function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  return sendProblem(reply, await recordFailure(error, request, reply));
}

/** The methods a route of ours may answer; OPTIONS is CORS's preflight, answered on every path when CORS is on. */
const ROUTE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
/** The methods the server as a whole takes (OPTIONS *, a CONNECT refused). */
const SERVER_ALLOW = [...ROUTE_METHODS, 'OPTIONS'].join(', ');

/**
 * No route for this method and path: 405 with `Allow` when the path has
 * routes for other methods (RFC 9110 §15.5.6), so `PATCH /users/me` says
 * to use GET, PUT or DELETE; 404 when no method has one.
 */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const path = request.url.split('?')[0] ?? '/';
  const allowed: string[] = ROUTE_METHODS.filter((method) => request.server.findRoute({ method, url: path }) !== null);
  // A route of this very method that found nothing (a missing file under /docs/static/*) is a 404, whatever other methods match.
  const count = (code: string): void => request.server.ctx.metrics.httpErrors.inc({ route: request.routeOptions.url ?? UNMATCHED, code });
  if (allowed.length === 0 || allowed.includes(request.method)) {
    clearSuccessHeaders(reply, 404);
    count('not_found');
    return sendProblem(reply, problem(404, 'not_found', `No route for ${request.method} ${path}.`));
  }
  clearSuccessHeaders(reply, 405);
  count('method_not_allowed');
  reply.header('allow', allowed.join(', '));
  const send = request.server.failureFormats.of(path);
  return send(reply, problem(405, 'method_not_allowed', `${request.method} is not allowed on ${path}; it takes ${allowed.join(', ')}.`));
}

/**
 * Fastify's `frameworkErrors`: a URL it cannot route (bad percent-encoding, an
 * over-long path part) is answered before any hook runs, so the answer gets
 * here what the hooks would have given it (`headers`: security headers and
 * the request id).
 */
export function frameworkError(error: FastifyError, reply: FastifyReply, headers: Record<string, string>): FastifyReply {
  const p = toProblem(error);
  clearSuccessHeaders(reply, p.status);
  reply.server.ctx.metrics.httpErrors.inc({ route: UNMATCHED, code: p.code });
  const send = reply.server.failureFormats.of(reply.request.url.split('?')[0] ?? '/');
  return send(reply.headers(headers), p);
}

const CLIENT_ERRORS: Record<string, [status: number, code: string, detail: string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'The request did not arrive in time.'],
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large', 'The request\'s headers are too large.'],
};

/**
 * Fastify's `clientErrorHandler`: a request that is not valid HTTP (two
 * Content-Lengths, a space in a header name, headers too large) never
 * becomes a request. Answered on the socket as problem+json, with a new
 * request id like every other answer (the caller's cannot be trusted from a
 * head that did not parse), then the socket is closed, as Node does. It is
 * told to `refused` for its log line and metrics, with what of its request
 * line could be read.
 */
export function clientErrorHandler(newRequestId: () => string, refused: Refused): (err: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Duplex) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // A request is in flight on this socket (its client closed its side mid-body: HPE_INVALID_EOF_STATE).
    // Its answer may be under way, so nothing is written here, as Node's own handler does; that request
    // gets its own log line (app.ts, onRequestAbort). `_httpMessage` is the property Node's handler reads.
    if ((socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy(err);
      return;
    }
    const [status, code, detail] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'malformed_request', 'The request is not valid HTTP/1.1.'];
    const requestId = newRequestId();
    if (socket.writable) socket.write(closingProblemBytes(status, code, detail, requestId));
    socket.destroy(err);
    const { method, url } = requestLine(err.rawPacket);
    refused(requestId, method, url, status, code);
  };
}

const KNOWN_METHODS = new Set(METHODS);
const REQUEST_LINE = /^([A-Z-]{1,20}) (\S{1,2048}) HTTP\/\d\.\d$/;

/**
 * The method and target of the bytes that failed to parse, when their first
 * line is a request line; `-` for what cannot be read. Only a method Node
 * knows is kept, so a metrics label cannot take any value a client sends.
 */
export function requestLine(raw: unknown): { method: string; url: string } {
  const head = Buffer.isBuffer(raw) ? raw.subarray(0, 2100).toString('latin1') : '';
  const match = REQUEST_LINE.exec(head.split('\r\n', 1)[0] ?? '');
  const method = match?.[1] ?? '-';
  return { method: KNOWN_METHODS.has(method) ? method : '-', url: match?.[2] ?? '-' };
}

/** The head and body of a problem answer to a request that never reached a route; the connection is closed after it. */
function closingProblem(status: number, code: string, detail: string, requestId: string): { headers: Record<string, string | number>; body: string } {
  const body = JSON.stringify(problem(status, code, detail));
  const headers = {
    'Content-Type': 'application/problem+json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'X-Request-Id': requestId,
    // Node adds Date to what goes through its response, not to what is written on the socket (RFC 9110 6.6.1: an origin server sends one).
    Date: new Date().toUTCString(),
    Connection: 'close',
  };
  return { headers, body };
}

/** closingProblem written whole on a socket, for a request that did not even parse (or that Node hands over as a socket: CONNECT). */
function closingProblemBytes(status: number, code: string, detail: string, requestId: string, extra: Record<string, string> = {}): string {
  const { headers: base, body } = closingProblem(status, code, detail, requestId);
  const headers = { ...base, ...extra };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${lines}\r\n${body}`;
}

/**
 * A request whose Host is missing (HTTP/1.1), given twice or not a host
 * (RFC 9112, section 3.2: a 400). Node would answer a missing one with a
 * bare 400 of its own (its `requireHostHeader`, which Kiln's server turns
 * off) and take the others; each is answered here as every other malformed
 * request is, before any hot path or route sees it. True when it was.
 */
export function refuseBadHost(req: IncomingMessage, res: ServerResponse, newRequestId: () => string, refused: Refused): boolean {
  const host = req.headers.host;
  if (host === undefined) {
    if (req.httpVersion !== '1.1') return false;
    refuseBeforeFastify(req, res, 400, 'malformed_request', 'An HTTP/1.1 request needs a Host header.', newRequestId, refused);
    return true;
  }
  // Node joins nothing for Host: a second one is dropped from `headers`, so the raw list is counted.
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if ((req.rawHeaders[i] as string).length === 4 && (req.rawHeaders[i] as string).toLowerCase() === 'host') hosts++;
  if (hosts === 1 && isHostValue(host)) return false;
  refuseBeforeFastify(req, res, 400, 'malformed_request', hosts > 1 ? 'A request has one Host header.' : 'The Host header is not a host name or address, with an optional port.', newRequestId, refused);
  return true;
}

/** Told of a request refused before Fastify saw it (or before it parsed), for its log line and metrics (app.ts). */
export type Refused = (requestId: string, method: string, url: string, status: number, code: string) => void;

/**
 * The asterisk target (`OPTIONS * HTTP/1.1`) asks about the server as a
 * whole (RFC 9110 9.3.7): 204 with the methods Kiln takes. With any other
 * method it names nothing (a 400); Fastify would have routed it as `/`.
 * True when it was answered.
 */
export function answerAsteriskTarget(req: IncomingMessage, res: ServerResponse, newRequestId: () => string, refused: Refused): boolean {
  if (req.url !== '*') return false;
  if (req.method === 'OPTIONS') {
    const requestId = newRequestId();
    res.writeHead(204, { Allow: SERVER_ALLOW, 'Content-Length': 0, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', 'X-Request-Id': requestId });
    res.end();
    refused(requestId, 'OPTIONS', '*', 204, 'server_options');
    return true;
  }
  refuseBeforeFastify(req, res, 400, 'malformed_request', `The target * is for OPTIONS only; ${req.method ?? 'this method'} needs a path.`, newRequestId, refused);
  return true;
}

/**
 * A CONNECT (a proxy tunnel, which Kiln is not): 405 as problem+json on the
 * socket, the connection closed. Node closes such a connection without a word.
 */
export function refuseConnect(req: IncomingMessage, socket: Duplex, newRequestId: () => string, refused: Refused): void {
  const requestId = newRequestId();
  if (socket.writable) socket.write(closingProblemBytes(405, 'method_not_allowed', 'CONNECT is not allowed: this server is not a proxy.', requestId, { Allow: SERVER_ALLOW }));
  socket.destroy();
  refused(requestId, 'CONNECT', req.url ?? '-', 405, 'method_not_allowed');
}

/**
 * A request whose `Expect` is not `100-continue` (RFC 9110, section 10.1.1:
 * 417). Node would answer it with a bare 417 of its own; it is answered here
 * as problem+json with a request id, and the connection closed, as its body
 * is never read.
 */
export function refuseExpectation(req: IncomingMessage, res: ServerResponse, newRequestId: () => string, refused: Refused): void {
  refuseBeforeFastify(req, res, 417, 'expectation_failed', 'The only expectation this server meets is Expect: 100-continue.', newRequestId, refused);
}

/** closingProblem as the answer on Node's response, with a new request id, told to `refused`. */
function refuseBeforeFastify(req: IncomingMessage, res: ServerResponse, status: number, code: string, detail: string, newRequestId: () => string, refused: Refused): void {
  // Connection: close, as for any request that did not parse: its body, if it has one, is never read.
  const requestId = newRequestId();
  const { headers, body } = closingProblem(status, code, detail, requestId);
  res.writeHead(status, headers);
  res.end(body);
  refused(requestId, req.method ?? 'GET', req.url ?? '/', status, code);
}
