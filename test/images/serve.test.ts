import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendStoredImage, parseRange } from '../../src/images/serve.js';
import { FsBlobStore } from '../../src/platform/blobs/fs.js';
import { errorHandler } from '../../src/platform/http/errors.js';

const BODY = readFileSync(new URL('../fixtures/rocket_small_640x427.jpg', import.meta.url));
const ETAG = createHash('sha256').update(BODY).digest('hex');
const LAST_MODIFIED = new Date('2024-05-06T07:08:09.123Z');
const SIZE = BODY.length;

let dir: string;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-'));
  const blobs = new FsBlobStore(path.join(dir, 'blobs'), path.join(dir, 'tmp'));
  await blobs.put('gallery/abc/thumb.jpg', BODY, 'image/jpeg');
  app = Fastify();
  // The project's error handler only needs the metrics counter from the Context.
  app.decorate('ctx', { metrics: { httpErrors: { inc: () => undefined } }, config: { maxUploadSize: 1024, maxFilesPerOrder: 1 } } as unknown as FastifyInstance['ctx']);
  app.setErrorHandler(errorHandler);
  const file = { key: 'gallery/abc/thumb.jpg', etag: ETAG, bytes: SIZE, lastModified: LAST_MODIFIED, cacheControl: 'public, max-age=31536000, immutable' };
  app.get('/img', (request, reply) => sendStoredImage(request, reply, blobs, file));
  app.get('/missing', (request, reply) => sendStoredImage(request, reply, blobs, { ...file, key: 'gallery/nope/thumb.jpg' }));
  // Over SMALL_FILE_BYTES: streamed, not read whole.
  app.get('/missing-big', (request, reply) => sendStoredImage(request, reply, blobs, { ...file, key: 'gallery/nope/original.jpg', bytes: 2 * 1024 * 1024 }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An error must not be cached as the image would have been (a year, immutable), nor revalidated with the image's validators. */
function expectUncachedError(res: Response): void {
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(res.headers.get('etag')).toBeNull();
  expect(res.headers.get('last-modified')).toBeNull();
  expect(res.headers.get('accept-ranges')).toBeNull();
}

const get = (headers: Record<string, string> = {}, method = 'GET', url = '/img'): Promise<Response> => fetch(base + url, { method, headers });

describe('sendStoredImage over a real server', () => {
  it('sends the whole file with validators and caching headers', async () => {
    const res = await get();
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe(`"${ETAG}"`);
    expect(res.headers.get('last-modified')).toBe('Mon, 06 May 2024 07:08:09 GMT');
    expect(res.headers.get('content-length')).toBe(String(SIZE));
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await res.arrayBuffer()).equals(BODY)).toBe(true);
  });

  it('answers 412 when If-Match names another file (strong comparison), before a Range or a 304 is weighed', async () => {
    const failing: Array<Record<string, string>> = [{ 'if-match': '"another"' }, { 'if-match': `W/"${ETAG}"` }, { 'if-match': '"another"', range: 'bytes=0-9' }, { 'if-match': '"another"', 'if-none-match': `"${ETAG}"` }];
    for (const headers of failing) {
      const res = await get(headers);
      expect(res.status, JSON.stringify(headers)).toBe(412);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(((await res.json()) as { code: string }).code).toBe('precondition_failed');
      expectUncachedError(res);
    }
    for (const ifMatch of [`"${ETAG}"`, `"other", "${ETAG}"`, '*']) {
      const res = await get({ 'if-match': ifMatch, range: 'bytes=0-9' });
      expect(res.status, ifMatch).toBe(206);
      expect((await res.arrayBuffer()).byteLength).toBe(10);
    }
  });

  it('answers 412 when If-Unmodified-Since is before the file changed; ignores it with If-Match, and when it is not a date', async () => {
    const before = 'Mon, 06 May 2024 07:08:08 GMT';
    const res = await get({ 'if-unmodified-since': before });
    expect(res.status).toBe(412);
    await res.body?.cancel();
    const holding: Array<Record<string, string>> = [{ 'if-unmodified-since': 'Mon, 06 May 2024 07:08:09 GMT' }, { 'if-unmodified-since': before, 'if-match': `"${ETAG}"` }, { 'if-unmodified-since': '2030' }];
    for (const headers of holding) {
      const ok = await get(headers);
      expect(ok.status, JSON.stringify(headers)).toBe(200);
      await ok.body?.cancel();
    }
  });

  it('answers If-None-Match with 304 and no body', async () => {
    for (const inm of [`"${ETAG}"`, `W/"${ETAG}"`, `"other", "${ETAG}"`, `"other",W/"${ETAG}"`, `"a" ,  "${ETAG}" , "b"`, '*']) {
      const res = await get({ 'if-none-match': inm });
      expect(res.status).toBe(304);
      expect(res.headers.get('etag')).toBe(`"${ETAG}"`);
      expect((await res.arrayBuffer()).byteLength).toBe(0);
    }
    expect((await get({ 'if-none-match': '"stale"' })).status).toBe(200);
    // Only the whole ETag matches: one that shares most of it is another file's, alone, weak or in a list.
    const near = `${ETAG.slice(0, -1)}${ETAG.endsWith('0') ? '1' : '0'}`;
    for (const inm of [`"${near}"`, `W/"${near}"`, `"other", "${near}"`, `"${ETAG}-gzip"`, `"${ETAG.slice(0, 32)}"`]) {
      expect((await get({ 'if-none-match': inm })).status, inm).toBe(200);
    }
  });

  it('answers If-Modified-Since with 304 unless the file is newer, and lets If-None-Match win', async () => {
    expect((await get({ 'if-modified-since': 'Mon, 06 May 2024 07:08:09 GMT' })).status).toBe(304);
    expect((await get({ 'if-modified-since': 'Mon, 06 May 2024 07:08:08 GMT' })).status).toBe(200);
    // A date after Last-Modified (a cache's own clock, a later copy) is "not modified since" too.
    expect((await get({ 'if-modified-since': 'Mon, 06 May 2024 07:08:10 GMT' })).status).toBe(304);
    expect((await get({ 'if-modified-since': 'Mon, 06 May 2024 07:08:09 GMT', 'if-none-match': '"stale"' })).status).toBe(200);
    // The two obsolete forms of an HTTP date are dates too (RFC 9110 5.6.7); asctime's is UTC.
    expect((await get({ 'if-modified-since': 'Monday, 06-May-24 07:08:09 GMT' })).status).toBe(304);
    expect((await get({ 'if-modified-since': 'Mon May  6 07:08:09 2024' })).status).toBe(304);
    expect((await get({ 'if-modified-since': 'Mon May  6 07:08:08 2024' })).status).toBe(200);
  });

  it('reads an asctime date, which names no zone, as UTC whatever the server\'s time zone', async () => {
    const saved = process.env.TZ;
    process.env.TZ = 'Pacific/Kiritimati'; // UTC+14: a local reading would put the date 14 hours earlier
    try {
      expect((await get({ 'if-modified-since': 'Mon May  6 07:08:09 2024' })).status).toBe(304);
      expect((await get({ range: 'bytes=0-9', 'if-range': 'Mon May  6 07:08:09 2024' })).status).toBe(206);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it('ignores an If-Modified-Since or If-Range that is not an HTTP date', async () => {
    for (const value of ['2030', '2030-01-01', '2030-01-01T00:00:00Z', 'tomorrow', '']) {
      expect((await get({ 'if-modified-since': value })).status, value).toBe(200);
      expect((await get({ range: 'bytes=0-9', 'if-range': value })).status, value).toBe(200);
    }
  });

  it.each([
    ['bytes=0-99', 0, 99],
    ['bytes=0-0', 0, 0],
    ['bytes=500-500', 500, 500],
    ['bytes=100-', 100, SIZE - 1],
    ['bytes=-500', SIZE - 500, SIZE - 1],
    [`bytes=10-${SIZE + 1000}`, 10, SIZE - 1],
  ])('serves %s as 206 with Content-Range', async (range, start, end) => {
    const res = await get({ range });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${SIZE}`);
    expect(res.headers.get('content-length')).toBe(String(end - start + 1));
    expect(Buffer.from(await res.arrayBuffer()).equals(BODY.subarray(start, end + 1))).toBe(true);
  });

  it('answers an unsatisfiable range with 416 and bytes */size', async () => {
    for (const range of [`bytes=${SIZE}-`, `bytes=${SIZE + 10}-${SIZE + 20}`, 'bytes=-0']) {
      const res = await get({ range });
      expect(res.status).toBe(416);
      expect(res.headers.get('content-range')).toBe(`bytes */${SIZE}`);
      expect(await res.json()).toMatchObject({ status: 416, code: 'range_not_satisfiable' });
      expectUncachedError(res);
    }
  });

  it('ignores ranges it does not serve (several ranges, other units) and a stale If-Range', async () => {
    const cases: Array<Record<string, string>> = [{ range: 'bytes=0-1,5-6' }, { range: 'items=0-1' }, { range: 'bytes=0-9', 'if-range': '"stale"' }];
    for (const headers of cases) {
      const res = await get(headers);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe(String(SIZE));
    }
    expect((await get({ range: 'bytes=0-9', 'if-range': `"${ETAG}"` })).status).toBe(206);
  });

  it('honours If-Range only by strong comparison: a weak ETag or an earlier date gets the whole file, the exact date a range', async () => {
    const cases: Array<[string, number]> = [
      [`W/"${ETAG}"`, 200],
      ['Mon, 06 May 2024 07:08:09 GMT', 206],
      ['Mon, 06 May 2024 07:08:08 GMT', 200],
      ['Sun, 05 May 2024 07:08:09 GMT', 200],
      // Not "modified since": an If-Range date must match Last-Modified exactly (RFC 9110 13.1.5), a later one too gets the whole file.
      ['Mon, 06 May 2024 07:08:10 GMT', 200],
      ['Tue, 07 May 2024 07:08:09 GMT', 200],
    ];
    for (const [ifRange, status] of cases) {
      const res = await get({ range: 'bytes=0-9', 'if-range': ifRange });
      const length = status === 206 ? 10 : SIZE;
      expect([ifRange, res.status, res.headers.get('content-length'), (await res.arrayBuffer()).byteLength]).toEqual([ifRange, status, String(length), length]);
    }
  });

  it('answers a HEAD with a Range as a full GET would: 200, the whole length, no Content-Range', async () => {
    const res = await get({ range: 'bytes=0-9' }, 'HEAD');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(SIZE));
    expect(res.headers.get('content-range')).toBeNull();
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('answers HEAD with the headers of a GET and no body', async () => {
    const res = await get({}, 'HEAD');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(SIZE));
    expect(res.headers.get('etag')).toBe(`"${ETAG}"`);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('answers a HEAD that revalidates with a 304 that claims no length (RFC 9110 8.6)', async () => {
    const revalidations: Array<Record<string, string>> = [{ 'if-none-match': `"${ETAG}"` }, { 'if-modified-since': 'Mon, 06 May 2024 07:08:09 GMT' }];
    for (const headers of revalidations) {
      const res = await get(headers, 'HEAD');
      expect(res.status).toBe(304);
      expect(res.headers.get('content-length')).toBeNull();
      expect(res.headers.get('etag')).toBe(`"${ETAG}"`);
    }
    expect((await get({ 'if-none-match': `"${ETAG}"` })).headers.get('content-length')).toBeNull();
  });

  it('answers 404 problem+json when the blob is gone, whole or in part, small or streamed', async () => {
    for (const url of ['/missing', '/missing-big']) {
      for (const headers of [{}, { range: 'bytes=0-9' }] as Array<Record<string, string>>) {
        const res = await get(headers, 'GET', url);
        expect(res.status).toBe(404);
        expect(res.headers.get('content-type')).toContain('application/problem+json');
        expectUncachedError(res);
        expect(res.headers.get('content-range')).toBeNull();
      }
    }
  });
});

describe('parseRange', () => {
  it('reads the three single-range forms and refuses nothing it does not understand', () => {
    expect(parseRange(undefined, 10)).toEqual({ kind: 'full' });
    expect(parseRange('bytes=2-4', 10)).toEqual({ kind: 'partial', range: { start: 2, end: 4 } });
    expect(parseRange('bytes=-3', 10)).toEqual({ kind: 'partial', range: { start: 7, end: 9 } });
    expect(parseRange('bytes=-30', 10)).toEqual({ kind: 'partial', range: { start: 0, end: 9 } });
    expect(parseRange('bytes=5-2', 10)).toEqual({ kind: 'full' });
    expect(parseRange('bytes=4-4', 10)).toEqual({ kind: 'partial', range: { start: 4, end: 4 } });
    expect(parseRange('bytes=10-', 10)).toEqual({ kind: 'unsatisfiable' });
  });
});
