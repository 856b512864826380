/**
 * Serving stored images over HTTP: validators (strong ETag from the stored
 * hash, Last-Modified), conditional GETs (304), single byte ranges (206 /
 * 416), HEAD, and the body streamed from the blob store, never buffered.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../errors.js';
import type { BlobStore, ByteRange } from '../platform/blobs/index.js';
import { DOCUMENT_ONLY_HEADERS, MEDIA_CSP } from '../platform/http/security.js';

export interface StoredFile {
  key: string;
  /** Hex SHA-256 of the stored bytes. */
  etag: string;
  bytes: number;
  lastModified: Date;
  contentType?: string;
  cacheControl: string;
}

export class RangeNotSatisfiable extends DomainError {
  constructor(size: number) {
    super(416, 'range_not_satisfiable', `The requested range is outside the file's ${size} bytes.`);
  }
}

/** If-Match or If-Unmodified-Since said the client's copy is not the current one (RFC 9110 13.1.1, 13.1.4). */
export class PreconditionFailed extends DomainError {
  constructor() {
    super(412, 'precondition_failed', 'The file is not the one If-Match or If-Unmodified-Since names: it has changed.');
  }
}

type RangeAnswer = { kind: 'full' } | { kind: 'partial'; range: ByteRange } | { kind: 'unsatisfiable' };

/**
 * One `bytes=a-b`, `bytes=a-` or `bytes=-n`. A header we do not understand
 * (other unit, several ranges, bad syntax) is ignored and the whole file is
 * sent, as RFC 9110 allows; only a well-formed range outside the file is a 416.
 */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'full' };
  const [first, last] = [m[1] as string, m[2] as string];
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', range: { start, end } };
}

function etagsIn(header: string): string[] {
  return header.split(',').map((t) => t.trim().replace(/^W\//, ''));
}

const IMF_FIXDATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC_850_DATE = /^[A-Z][a-z]{5,8}, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/;
const ASCTIME_DATE = /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * An HTTP-date (RFC 9110 5.6.7: the preferred form and the two obsolete
 * ones) in ms, or NaN. Anything else is not a date, however Date.parse
 * would read it ("2030" would be a year), and a condition on it is ignored.
 */
export function parseHttpDate(value: string): number {
  if (IMF_FIXDATE.test(value) || RFC_850_DATE.test(value)) return Date.parse(value);
  if (ASCTIME_DATE.test(value)) return Date.parse(`${value} GMT`); // asctime has no zone: it is UTC
  return Number.NaN;
}

/** If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2); HTTP dates have whole seconds. */
export function notModified(request: { headers: Pick<IncomingHttpHeaders, 'if-none-match' | 'if-modified-since'> }, quotedEtag: string, lastModified: Date): boolean {
  const inm = request.headers['if-none-match'];
  // The usual revalidation sends back exactly the one ETag it got: no list to split.
  if (inm === quotedEtag) return true;
  if (inm !== undefined) return etagsIn(inm).some((t) => t === '*' || t === quotedEtag);
  const ims = request.headers['if-modified-since'];
  if (ims === undefined) return false;
  const since = parseHttpDate(ims);
  return !Number.isNaN(since) && Math.floor(lastModified.getTime() / 1000) * 1000 <= since;
}

/**
 * If-Match (strong comparison; `*` is any current file), or without it
 * If-Unmodified-Since: false when the file is not the client's copy, which
 * is a 412 before anything else is looked at (RFC 9110 13.2.2). A date that
 * does not parse is ignored, as the RFC asks.
 */
export function preconditionsHold(request: { headers: Pick<IncomingHttpHeaders, 'if-match' | 'if-unmodified-since'> }, quotedEtag: string, lastModified: Date): boolean {
  const im = request.headers['if-match'];
  // Strong comparison: a weak tag (W/"…") never matches.
  if (im !== undefined) return im.split(',').some((t) => t.trim() === '*' || t.trim() === quotedEtag);
  const ius = request.headers['if-unmodified-since'];
  if (ius === undefined) return true;
  const since = parseHttpDate(ius);
  return Number.isNaN(since) || Math.floor(lastModified.getTime() / 1000) * 1000 <= since;
}

/** If-Range: a range is honoured only while the client's copy is still current (strong comparison). */
function rangeStillValid(request: FastifyRequest, quotedEtag: string, lastModified: Date): boolean {
  const raw = request.headers['if-range'];
  const ifRange = Array.isArray(raw) ? raw[0] : raw;
  if (ifRange === undefined) return true;
  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) return ifRange === quotedEtag;
  const date = parseHttpDate(ifRange);
  return !Number.isNaN(date) && Math.floor(lastModified.getTime() / 1000) * 1000 === date;
}

/** The StoredFile of one stored JPEG size, from what its row keeps (ETag and length) and when it was made. */
export function jpegVariantFile(key: string, variant: { etag: string; bytes: number }, createdAt: Date, cacheControl: string): StoredFile {
  return { key, etag: variant.etag, bytes: variant.bytes, lastModified: createdAt, contentType: 'image/jpeg', cacheControl };
}

/**
 * What every answer for a stored file carries (200, 206, 304): the
 * validators, its caching rule and range support, as [name, value, …]. An
 * error thrown after they were set (416, a blob gone) leaves without them:
 * the error handler clears them (platform/http/errors.ts).
 */
export function fileHeaders(file: Pick<StoredFile, 'lastModified' | 'cacheControl'>, quotedEtag: string): string[] {
  return ['etag', quotedEtag, 'last-modified', file.lastModified.toUTCString(), 'cache-control', file.cacheControl, 'accept-ranges', 'bytes'];
}

/** At or under this size a file is read whole rather than streamed (see platform/blobs/cached.ts). */
export const SMALL_FILE_BYTES = 256 * 1024;

export async function sendStoredImage(
  request: FastifyRequest,
  reply: FastifyReply,
  blobs: BlobStore,
  file: StoredFile,
): Promise<FastifyReply> {
  const quotedEtag = `"${file.etag}"`;
  // The image answer's security headers (platform/http/security.ts), in place of the documents' set.
  for (const name of DOCUMENT_ONLY_HEADERS) reply.removeHeader(name);
  reply.header('content-security-policy', MEDIA_CSP);
  const common = fileHeaders(file, quotedEtag);
  for (let i = 0; i < common.length; i += 2) reply.header(common[i] as string, common[i + 1]);

  // A HEAD's empty payload would get Content-Length: 0 from Fastify; a 304 carries none (RFC 9110 8.6).
  if (!preconditionsHold(request, quotedEtag, file.lastModified)) throw new PreconditionFailed();
  if (notModified(request, quotedEtag, file.lastModified)) return reply.code(304).send(request.method === 'HEAD' ? Readable.from([]) : undefined);

  // Range handling is defined for GET only; HEAD answers as a full GET would.
  const wantsRange = request.method === 'GET' && rangeStillValid(request, quotedEtag, file.lastModified);
  const answer = wantsRange ? parseRange(request.headers.range, file.bytes) : ({ kind: 'full' } as const);
  if (answer.kind === 'unsatisfiable') {
    reply.header('content-range', `bytes */${file.bytes}`);
    throw new RangeNotSatisfiable(file.bytes);
  }

  reply.type(file.contentType ?? 'image/jpeg');
  const range = answer.kind === 'partial' ? answer.range : undefined;
  if (range) {
    reply.code(206);
    reply.header('content-range', `bytes ${range.start}-${range.end}/${file.bytes}`);
  }
  const length = range ? range.end - range.start + 1 : file.bytes;
  reply.header('content-length', String(length));
  // Fastify's automatic HEAD route rewrites Content-Length to 0 for an empty
  // payload but keeps ours for a stream; an empty one reads nothing from the store.
  if (request.method === 'HEAD') return reply.send(Readable.from([]));
  // The store answers NotFound (404) before any header has left, when the blob is gone.
  if (file.bytes <= SMALL_FILE_BYTES) {
    // Small files (thumbs, game icons) as one buffer: a caching store answers them from memory.
    const whole = await blobs.readAll(file.key);
    // A file damaged on the store (cut short by a full disk, a restore gone wrong) is not sent as the
    // image its ETag names, to be cached for a year: a 500, and the log says which. (A streamed large
    // file that ends early ends its answer short, and the client sees the transfer cut.)
    if (whole.length !== file.bytes) throw new Error(`stored file ${file.key} has ${whole.length} bytes, its record ${file.bytes}`);
    return reply.send(range ? whole.subarray(range.start, range.end + 1) : whole);
  }
  // A client gone before this answer's turn (a pipelined request whose connection closed) gets no file
  // opened for it, nor kept open: its response will never take one (platform/http/pipelined.ts).
  if (request.raw.destroyed) return reply.hijack();
  const body = await blobs.read(file.key, range);
  if (request.raw.destroyed) {
    body.destroy();
    return reply.hijack();
  }
  return reply.send(body);
}
