import { rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { expectProblem } from '../../helpers/problem.js';
import { getRequest, RawConnection } from '../../helpers/raw-http.js';
import type { Clock } from '../../../src/clock.js';
import { filesUnder } from '../../helpers/files.js';

const ROCKET = fixture('rocket_small_640x427.jpg');
const PATH = fixture('path_2560x1600_olympus_exif.jpg');

interface Uploaded {
  image_id: string;
  project_id: string;
  is_primary: boolean;
  width: number;
  height: number;
  urls: Record<string, string>;
}

interface Listing {
  project_id: string;
  primary_image_id: string | null;
  images: Array<{ image_id: string; is_primary: boolean; created_at: string; width: number; height: number; bytes: number; sha256: string; urls: Record<string, string> }>;
}

let server: TestServer;
let alice: TestUser;
let bob: TestUser;

/** `user`: whose credentials go with the upload, in any of the headers Kiln takes. */
async function upload(project: string, user: { headers: Record<string, string> }, data: Buffer = ROCKET): Promise<Response> {
  return postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'photo.jpg', data, type: 'image/jpeg' }], user.headers);
}

async function uploadOk(project: string, user: { headers: Record<string, string> }, data: Buffer = ROCKET): Promise<Uploaded> {
  const res = await upload(project, user, data);
  expect(res.status).toBe(201);
  return (await res.json()) as Uploaded;
}

async function list(project: string, headers: Record<string, string> = {}): Promise<Listing> {
  const res = await fetch(`${server.url}/projects/${project}/images`, { headers });
  expect(res.status).toBe(200);
  return (await res.json()) as Listing;
}

beforeAll(async () => {
  server = await startServer();
  alice = await registerUser(server.url, 'alice');
  bob = await registerUser(server.url, 'bob');
});
afterAll(async () => server.close());

describe('gallery upload and variants', () => {
  it('answers 201 with the image, its size and the four urls', async () => {
    const body = await uploadOk('cats', alice, PATH);
    expect(body).toMatchObject({ project_id: 'cats', is_primary: true, width: 2560, height: 1600 });
    expect(body.image_id).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    for (const size of ['original', 'medium', 'thumb', 'game']) {
      expect(body.urls[size]).toBe(`/projects/cats/images/${body.image_id}?size=${size}`);
    }
  });

  it('stores every size as a JPEG of the right dimensions', async () => {
    const { urls } = await uploadOk('sizes', alice, PATH);
    const expected: Record<string, [number, number]> = { original: [2560, 1600], medium: [1600, 1000], thumb: [400, 250], game: [50, 50] };
    for (const [size, [w, h]] of Object.entries(expected)) {
      const res = await fetch(`${server.url}${urls[size]}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/jpeg');
      const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', w, h]);
      expect(meta.exif).toBeUndefined();
    }
  });

  it('never enlarges a small image', async () => {
    const { urls } = await uploadOk('small', alice, ROCKET);
    const medium = await sharp(Buffer.from(await (await fetch(`${server.url}${urls.medium}`)).arrayBuffer())).metadata();
    expect([medium.width, medium.height]).toEqual([640, 427]);
  });

  it('serves original by default and refuses an unknown size with 422', async () => {
    const { image_id } = await uploadOk('default-size', alice);
    const res = await fetch(`${server.url}/projects/default-size/images/${image_id}`);
    expect(res.status).toBe(200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect(meta.width).toBe(640);
    const bad = await fetch(`${server.url}/projects/default-size/images/${image_id}?size=huge`);
    expect(bad.status).toBe(422);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    // One error, naming the sizes there are.
    const problem = (await bad.json()) as { detail: string; errors: Array<{ field: string; message: string }> };
    expect(problem.errors).toEqual([{ field: 'querystring.size', message: 'must be one of "original", "medium", "thumb", "game"' }]);
    expect(problem.detail).toBe('querystring.size must be one of "original", "medium", "thumb", "game".');
  });

  it('ignores text fields beside the one file, before it and after it', async () => {
    const res = await postMultipart(
      `${server.url}/projects/captioned/images`,
      [
        { field: 'caption', data: 'before' },
        { field: 'file', filename: 'a.jpg', data: ROCKET, type: 'image/jpeg' },
        { field: 'note', data: 'after' },
      ],
      alice.headers,
    );
    expect(res.status).toBe(201);
    expect((await list('captioned')).images).toHaveLength(1);
  });

  it('takes PNG, WebP and AVIF uploads by their bytes and stores every size as JPEG', async () => {
    const pixels = sharp(ROCKET);
    const kinds: Array<[string, Buffer]> = [
      ['png', await pixels.clone().png().toBuffer()],
      ['webp', await pixels.clone().webp().toBuffer()],
      ['avif', await pixels.clone().avif().toBuffer()],
    ];
    for (const [kind, data] of kinds) {
      // Named .jpg and sent as image/jpeg on purpose: the type is read from the bytes.
      const body = await uploadOk(`kind-${kind}`, alice, data);
      expect([body.width, body.height], kind).toEqual([640, 427]);
      const original = await sharp(Buffer.from(await (await fetch(`${server.url}${body.urls.original}`)).arrayBuffer())).metadata();
      expect([original.format, original.width, original.height], kind).toEqual(['jpeg', 640, 427]);
    }
  });

  it('answers and lists the size as shown: a photo stored sideways (EXIF orientation 6) is portrait', async () => {
    const stored = await sharp(fixture('orient_6.jpg')).metadata();
    expect(stored.orientation).toBe(6);
    const body = await uploadOk('sideways', alice, fixture('orient_6.jpg'));
    expect([body.width, body.height]).toEqual([stored.height, stored.width]);
    const [listed] = (await list('sideways')).images;
    expect([listed?.width, listed?.height]).toEqual([stored.height, stored.width]);
    const thumb = await sharp(Buffer.from(await (await fetch(`${server.url}${body.urls.thumb}`)).arrayBuffer())).metadata();
    expect(thumb.height).toBe(400);
    expect(thumb.width).toBeLessThan(400);
  });

  it('lists each image\'s created_at as an ISO 8601 UTC time', async () => {
    const before = Date.now();
    await uploadOk('times', alice);
    const [image] = (await list('times')).images;
    expect(image?.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Math.abs(Date.parse(image?.created_at ?? '') - before)).toBeLessThan(60_000);
  });

  it('lists each image with the urls its upload answered, one per size', async () => {
    const a = await uploadOk('listed-urls', alice);
    const b = await uploadOk('listed-urls', alice);
    const { images } = await list('listed-urls');
    expect(images.map((i) => i.urls)).toEqual([a.urls, b.urls]);
    expect(images[1]?.urls).toEqual({
      original: `/projects/listed-urls/images/${b.image_id}?size=original`,
      medium: `/projects/listed-urls/images/${b.image_id}?size=medium`,
      thumb: `/projects/listed-urls/images/${b.image_id}?size=thumb`,
      game: `/projects/listed-urls/images/${b.image_id}?size=game`,
    });
  });

  it('lists bytes and sha256 of the upload as received', async () => {
    await uploadOk('hashes', alice, ROCKET);
    const { images } = await list('hashes');
    const { createHash } = await import('node:crypto');
    expect(images[0]?.bytes).toBe(ROCKET.length);
    expect(images[0]?.sha256).toBe(createHash('sha256').update(ROCKET).digest('hex'));
  });
});

describe('primary image rules', () => {
  it('makes the first upload primary and keeps upload order', async () => {
    const a = await uploadOk('order', alice);
    const b = await uploadOk('order', alice);
    const c = await uploadOk('order', alice);
    expect([a.is_primary, b.is_primary, c.is_primary]).toEqual([true, false, false]);
    const listing = await list('order');
    expect(listing.primary_image_id).toBe(a.image_id);
    expect(listing.images.map((i) => i.image_id)).toEqual([a.image_id, b.image_id, c.image_id]);
    expect(listing.images.map((i) => i.is_primary)).toEqual([true, false, false]);
  });

  it('promotes the first remaining image when the primary is deleted, and none when empty', async () => {
    const a = await uploadOk('promote', alice);
    const b = await uploadOk('promote', alice);
    const c = await uploadOk('promote', alice);
    expect((await fetch(`${server.url}/projects/promote/images/${a.image_id}`, { method: 'DELETE', headers: alice.headers })).status).toBe(204);
    expect((await list('promote')).primary_image_id).toBe(b.image_id);
    await fetch(`${server.url}/projects/promote/images/${c.image_id}`, { method: 'DELETE', headers: alice.headers });
    expect((await list('promote')).primary_image_id).toBe(b.image_id);
    await fetch(`${server.url}/projects/promote/images/${b.image_id}`, { method: 'DELETE', headers: alice.headers });
    expect(await list('promote')).toEqual({ project_id: 'promote', primary_image_id: null, images: [] });
    const thumb = await fetch(`${server.url}/projects/promote/thumbnail`);
    expect(thumb.status).toBe(404);
    // Deleted files are gone.
    expect((await fetch(`${server.url}${a.urls.thumb}`)).status).toBe(404);
  });

  it('makes the next upload to a project whose images were all deleted its primary', async () => {
    const a = await uploadOk('emptied', alice);
    expect((await fetch(`${server.url}/projects/emptied/images/${a.image_id}`, { method: 'DELETE', headers: alice.headers })).status).toBe(204);
    expect((await list('emptied')).primary_image_id).toBeNull();
    const b = await uploadOk('emptied', alice);
    expect(b.is_primary).toBe(true);
    const listing = await list('emptied');
    expect(listing.primary_image_id).toBe(b.image_id);
    expect(listing.images.map((i) => [i.image_id, i.is_primary])).toEqual([[b.image_id, true]]);
    expect((await fetch(`${server.url}/projects/emptied/thumbnail`)).status).toBe(200);
  });

  it('removes the four stored files of a deleted image, and only those', async () => {
    const gone = await uploadOk('shredded', alice);
    const kept = await uploadOk('shredded', alice);
    const filesOf = (id: string) => filesUnder(path.join(server.dataDir, 'blobs', 'gallery', id));
    expect(await filesOf(gone.image_id)).toHaveLength(4);
    expect((await fetch(`${server.url}/projects/shredded/images/${gone.image_id}`, { method: 'DELETE', headers: alice.headers })).status).toBe(204);
    expect(await filesOf(gone.image_id)).toEqual([]);
    expect(await filesOf(kept.image_id)).toHaveLength(4);
  });

  it('keeps a primary set by PUT when another image is deleted, even the first one', async () => {
    const a = await uploadOk('keep-cover', alice);
    const b = await uploadOk('keep-cover', alice);
    const c = await uploadOk('keep-cover', alice);
    expect((await fetch(`${server.url}/projects/keep-cover/primary/${c.image_id}`, { method: 'PUT', headers: alice.headers })).status).toBe(200);
    for (const gone of [b, a]) {
      expect((await fetch(`${server.url}/projects/keep-cover/images/${gone.image_id}`, { method: 'DELETE', headers: alice.headers })).status).toBe(204);
      const listing = await list('keep-cover');
      expect(listing.primary_image_id).toBe(c.image_id);
      expect(listing.images.filter((i) => i.is_primary).map((i) => i.image_id)).toEqual([c.image_id]);
    }
  });

  it('sets the primary with PUT and the thumbnail follows it', async () => {
    const a = await uploadOk('cover', alice, ROCKET);
    const b = await uploadOk('cover', alice, PATH);
    const first = await fetch(`${server.url}/projects/cover/thumbnail`);
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('no-cache');
    const etagA = first.headers.get('etag');
    expect(etagA).toBeTruthy();
    expect((await sharp(Buffer.from(await first.arrayBuffer())).metadata()).width).toBe(400);

    const put = await fetch(`${server.url}/projects/cover/primary/${b.image_id}`, { method: 'PUT', headers: alice.headers });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ project_id: 'cover', primary_image_id: b.image_id });
    const again = await fetch(`${server.url}/projects/cover/thumbnail`, { headers: { 'if-none-match': etagA as string } });
    expect(again.status).toBe(200);
    expect(again.headers.get('etag')).not.toBe(etagA);
    await again.arrayBuffer();
    const listing = await list('cover');
    expect(listing.images.filter((i) => i.is_primary).map((i) => i.image_id)).toEqual([b.image_id]);
    expect(a.image_id).not.toBe(b.image_id);
  });

  it('answers 404 for a project never created', async () => {
    const res = await fetch(`${server.url}/projects/never-made/images`);
    expect(res.status).toBe(404);
    expect((await fetch(`${server.url}/projects/never-made/thumbnail`)).status).toBe(404);
  });
});

describe('ownership', () => {
  it('needs credentials to write', async () => {
    const res = await postMultipart(`${server.url}/projects/anon/images`, [{ field: 'file', filename: 'a.jpg', data: PATH }]);
    expect(res.status).toBe(401);
    expect((await fetch(`${server.url}/projects/anon/images`)).status).toBe(404);
  });

  it('answers 404 to anyone but the owner for upload, delete and primary, and changes nothing', async () => {
    const a = await uploadOk('alices', alice);
    // A large body refused before it is read still gets its answer (not a connection reset).
    expect((await upload('alices', bob, PATH)).status).toBe(404);
    expect((await upload('alices', bob)).status).toBe(404);
    expect((await fetch(`${server.url}/projects/alices/images/${a.image_id}`, { method: 'DELETE', headers: bob.headers })).status).toBe(404);
    expect((await fetch(`${server.url}/projects/alices/primary/${a.image_id}`, { method: 'PUT', headers: bob.headers })).status).toBe(404);
    const listing = await list('alices');
    expect(listing.images).toHaveLength(1);
    expect(listing.primary_image_id).toBe(a.image_id);
  });

  it('keeps the connection open after a 404 to a request without a body: the next request on it is answered', async () => {
    const conn = await RawConnection.open(server.url);
    try {
      conn.send(getRequest('/projects/alices/images/nosuchimage') + getRequest('/projects/alices/images'));
      const [missing, listing] = await conn.answers(2);
      expect(missing?.status).toBe(404);
      expect(missing?.headers.connection).toBe('keep-alive');
      expect(listing?.status).toBe(200);
    } finally {
      conn.destroy();
    }
  });

  it('takes a user\'s own API key wherever a bearer token works: it writes as its owner, and is 404 on someone else\'s project', async () => {
    const created = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: { ...alice.headers, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'gallery sync' }) });
    expect(created.status).toBe(201);
    const { key } = (await created.json()) as { key: string };
    const first = await uploadOk('keyed', { headers: { 'x-api-key': key } });
    expect(first.is_primary).toBe(true);
    // Alice's bearer token sees the key's upload as hers: she deletes it.
    const second = await uploadOk('keyed', { headers: { authorization: `Bearer ${key}` } });
    expect((await fetch(`${server.url}/projects/keyed/images/${second.image_id}`, { method: 'DELETE', headers: alice.headers })).status).toBe(204);
    await uploadOk('bobs-keyed', bob);
    expect((await upload('bobs-keyed', { headers: { 'x-api-key': key } })).status).toBe(404);
    expect((await list('bobs-keyed')).images).toHaveLength(1);
  });

  it('answers DELETE and PUT primary with 404 for an image that does not exist, one of another project, or a project never created, and changes nothing', async () => {
    const mine = await uploadOk('missing-a', alice);
    const other = await uploadOk('missing-b', alice);
    const bobs = await uploadOk('missing-bobs', bob);
    const before = await list('missing-a');
    const cases: Array<[string, string]> = [
      ['missing-a', 'no-such-image-id-here'],
      // An image of the caller's other project, and one of someone else's, named under the caller's project.
      ['missing-a', other.image_id],
      ['missing-a', bobs.image_id],
      ['never-created-here', mine.image_id],
    ];
    for (const [project, imageId] of cases) {
      for (const method of ['DELETE', 'PUT']) {
        const url = method === 'DELETE' ? `/projects/${project}/images/${imageId}` : `/projects/${project}/primary/${imageId}`;
        const res = await fetch(`${server.url}${url}`, { method, headers: alice.headers });
        await expectProblem(res, 404);
      }
    }
    expect(await list('missing-a')).toEqual(before);
    expect((await list('missing-b')).images.map((i) => i.image_id)).toEqual([other.image_id]);
    expect((await list('missing-bobs')).images.map((i) => i.image_id)).toEqual([bobs.image_id]);
    expect((await fetch(`${server.url}/projects/never-created-here/images`)).status).toBe(404);
    // Deleting twice: the second finds nothing.
    expect((await fetch(`${server.url}/projects/missing-b/images/${other.image_id}`, { method: 'DELETE', headers: alice.headers })).status).toBe(204);
    await expectProblem(await fetch(`${server.url}/projects/missing-b/images/${other.image_id}`, { method: 'DELETE', headers: alice.headers }), 404);
  });

  it('answers 404 for an image of another project', async () => {
    const a = await uploadOk('proj-a', alice);
    await uploadOk('proj-b', alice);
    expect((await fetch(`${server.url}/projects/proj-b/images/${a.image_id}`)).status).toBe(404);
    expect((await fetch(`${server.url}/projects/proj-b/primary/${a.image_id}`, { method: 'PUT', headers: alice.headers })).status).toBe(404);
  });
});

describe('caching headers', () => {
  it('sends ETag, Last-Modified, Content-Length and immutable public caching; 304 and 206', async () => {
    const { urls } = await uploadOk('cache', alice);
    const res = await fetch(`${server.url}${urls.thumb}`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('last-modified')).toBeTruthy();
    expect(Number(res.headers.get('content-length'))).toBe(body.length);
    const etag = res.headers.get('etag') as string;
    expect(etag).toMatch(/^"[0-9a-f]{16,}"$/);
    const notModified = await fetch(`${server.url}${urls.thumb}`, { headers: { 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    const part = await fetch(`${server.url}${urls.thumb}`, { headers: { range: 'bytes=0-99' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 0-99/${body.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(0, 100))).toBe(true);
  });

  it('answers a range of a large file (one streamed from the store, not held in memory) with exactly its bytes', async () => {
    const { urls } = await uploadOk('cache-large', alice, PATH);
    const whole = Buffer.from(await (await fetch(`${server.url}${urls.original}`)).arrayBuffer());
    expect(whole.length).toBeGreaterThan(256 * 1024);
    for (const [start, end] of [[1000, 1999], [whole.length - 10, whole.length - 1]] as const) {
      const part = await fetch(`${server.url}${urls.original}`, { headers: { range: `bytes=${start}-${end}` } });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes ${start}-${end}/${whole.length}`);
      expect(Number(part.headers.get('content-length'))).toBe(end - start + 1);
      expect(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(start, end + 1))).toBe(true);
    }
  });
});

/** An error answer must not be cached as the image would have been, nor revalidated with its validators. */
function expectUncachedError(res: Response, status: number): void {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(res.headers.get('etag')).toBeNull();
  expect(res.headers.get('last-modified')).toBeNull();
  expect(res.headers.get('accept-ranges')).toBeNull();
}

describe('error answers of the image routes', () => {
  it('a 416 keeps Content-Range: bytes */N and carries no validators and no caching', async () => {
    const { urls } = await uploadOk('err-range', alice);
    const size = Number((await fetch(`${server.url}${urls.thumb}`, { method: 'HEAD' })).headers.get('content-length'));
    for (const url of [urls.thumb, '/projects/err-range/thumbnail']) {
      const res = await fetch(`${server.url}${url}`, { headers: { range: `bytes=${size + 10}-` } });
      expectUncachedError(res, 416);
      expect(res.headers.get('content-range')).toBe(`bytes */${size}`);
      expect(await res.json()).toMatchObject({ status: 416, code: 'range_not_satisfiable' });
    }
  });

  it('a file gone from the blob store answers 404 without validators or caching, whole or in part, small or streamed', async () => {
    const small = await uploadOk('err-gone', alice, ROCKET);
    const big = await uploadOk('err-gone-big', alice, PATH);
    for (const [id, size] of [[small.image_id, 'thumb'], [big.image_id, 'original']] as const) {
      await rm(path.join(server.dataDir, 'blobs', 'gallery', id, `${size}.jpg`));
    }
    const urls = [small.urls.thumb, '/projects/err-gone/thumbnail', big.urls.original];
    for (const url of urls) {
      for (const headers of [{}, { range: 'bytes=0-99' }] as Array<Record<string, string>>) {
        const res = await fetch(`${server.url}${url}`, { headers });
        expectUncachedError(res, 404);
        expect(res.headers.get('content-range')).toBeNull();
        expect(await res.json()).toMatchObject({ status: 404 });
      }
    }
  });

  it('a small file cut short on the store answers 500 without validators, not its first bytes as the image its ETag names', async () => {
    const { image_id, urls } = await uploadOk('err-cut', alice, ROCKET);
    await truncate(path.join(server.dataDir, 'blobs', 'gallery', image_id, 'thumb.jpg'), 1000);
    for (const url of [urls.thumb, '/projects/err-cut/thumbnail']) {
      for (const headers of [{}, { range: 'bytes=0-99' }, { range: 'bytes=2000-2999' }] as Array<Record<string, string>>) {
        const res = await fetch(`${server.url}${url}`, { headers });
        expectUncachedError(res, 500);
        expect(res.headers.get('content-range')).toBeNull();
        expect(await res.json()).toMatchObject({ status: 500, code: 'internal_error' });
      }
    }
  });
});

describe('the thumbnail\'s Last-Modified never goes back when the primary changes', () => {
  let timed: TestServer;
  let owner: TestUser;
  /** Moved on by 10 s between steps: HTTP dates have whole seconds. */
  let offsetMs = 0;
  const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
  const later = (): void => {
    offsetMs += 10_000;
  };

  beforeAll(async () => {
    timed = await startServer({}, { clock });
    owner = await registerUser(timed.url, 'timed');
  });
  afterAll(async () => timed.close());

  const thumbnail = (project: string, headers: Record<string, string> = {}) => fetch(`${timed.url}/projects/${project}/thumbnail`, { headers });
  const bytesOf = async (res: Response): Promise<Buffer> => Buffer.from(await res.arrayBuffer());
  async function uploadTimed(project: string, data: Buffer): Promise<Uploaded> {
    const res = await postMultipart(`${timed.url}/projects/${project}/images`, [{ field: 'file', filename: 'p.jpg', data, type: 'image/jpeg' }], owner.headers);
    expect(res.status).toBe(201);
    return (await res.json()) as Uploaded;
  }
  /** A (older), then B (newer) made primary: the thumbnail shows B; returns both and the thumbnail's Last-Modified. */
  async function newerPrimary(project: string): Promise<{ a: Uploaded; b: Uploaded; lastModified: string }> {
    const a = await uploadTimed(project, ROCKET);
    later();
    const b = await uploadTimed(project, PATH);
    later();
    expect((await fetch(`${timed.url}/projects/${project}/primary/${b.image_id}`, { method: 'PUT', headers: owner.headers })).status).toBe(200);
    const shown = await thumbnail(project);
    expect(shown.status).toBe(200);
    const bThumb = await bytesOf(await fetch(`${timed.url}${b.urls.thumb}`));
    expect((await bytesOf(shown)).equals(bThumb)).toBe(true);
    later();
    return { a, b, lastModified: shown.headers.get('last-modified') as string };
  }
  /** Only If-Modified-Since, as a cache without the ETag would ask: the new primary's bytes, never a 304. */
  async function expectNewPicture(project: string, since: string, shows: Uploaded): Promise<void> {
    const res = await thumbnail(project, { 'if-modified-since': since });
    expect(res.status).toBe(200);
    expect(Date.parse(res.headers.get('last-modified') as string)).toBeGreaterThan(Date.parse(since));
    const expected = await bytesOf(await fetch(`${timed.url}${shows.urls.thumb}`));
    expect((await bytesOf(res)).equals(expected)).toBe(true);
    // And revalidating with what it just got is a 304 again.
    const again = await thumbnail(project, { 'if-modified-since': res.headers.get('last-modified') as string });
    expect(again.status).toBe(304);
  }

  it('deleting the primary makes an older image primary: If-Modified-Since gets that image, not a 304', async () => {
    const { a, b, lastModified } = await newerPrimary('lm-delete');
    expect((await fetch(`${timed.url}/projects/lm-delete/images/${b.image_id}`, { method: 'DELETE', headers: owner.headers })).status).toBe(204);
    await expectNewPicture('lm-delete', lastModified, a);
  });

  it('PUT primary back to an older image: If-Modified-Since gets that image, not a 304', async () => {
    const { a, lastModified } = await newerPrimary('lm-put');
    expect((await fetch(`${timed.url}/projects/lm-put/primary/${a.image_id}`, { method: 'PUT', headers: owner.headers })).status).toBe(200);
    await expectNewPicture('lm-put', lastModified, a);
  });

  it('a change made while the clock is behind (another process) does not move Last-Modified back', async () => {
    const { a, lastModified } = await newerPrimary('lm-behind');
    offsetMs -= 60_000;
    try {
      expect((await fetch(`${timed.url}/projects/lm-behind/primary/${a.image_id}`, { method: 'PUT', headers: owner.headers })).status).toBe(200);
      const res = await thumbnail('lm-behind');
      expect(res.status).toBe(200);
      expect(Date.parse(res.headers.get('last-modified') as string)).toBeGreaterThanOrEqual(Date.parse(lastModified));
      expect((await bytesOf(res)).equals(await bytesOf(await fetch(`${timed.url}${a.urls.thumb}`)))).toBe(true);
    } finally {
      offsetMs += 60_000;
      later();
    }
  });
});

describe('GALLERY_PUBLIC_READ=false', () => {
  let priv: TestServer;
  let owner: TestUser;
  let other: TestUser;
  beforeAll(async () => {
    priv = await startServer({ GALLERY_PUBLIC_READ: 'false' });
    owner = await registerUser(priv.url, 'owner');
    other = await registerUser(priv.url, 'other');
  });
  afterAll(async () => priv.close());

  it('lets only the owner read, with private caching', async () => {
    const res = await postMultipart(`${priv.url}/projects/secret/images`, [{ field: 'file', filename: 'a.jpg', data: ROCKET }], owner.headers);
    const { urls } = (await res.json()) as Uploaded;
    expect((await fetch(`${priv.url}/projects/secret/images`)).status).toBe(401);
    expect((await fetch(`${priv.url}/projects/secret/images`, { headers: other.headers })).status).toBe(404);
    expect((await fetch(`${priv.url}${urls.thumb}`, { headers: other.headers })).status).toBe(404);
    expect((await fetch(`${priv.url}/projects/secret/thumbnail`, { headers: other.headers })).status).toBe(404);
    const mine = await fetch(`${priv.url}${urls.thumb}`, { headers: owner.headers });
    expect(mine.status).toBe(200);
    expect(mine.headers.get('cache-control')).toMatch(/^private/);
    await mine.arrayBuffer();
    const cover = await fetch(`${priv.url}/projects/secret/thumbnail`, { headers: owner.headers });
    expect(cover.status).toBe(200);
    expect(cover.headers.get('cache-control')).toMatch(/^private/);
    expect(cover.headers.get('cache-control')).toContain('no-cache');
    await cover.arrayBuffer();
  });

  it('answers 401 without credentials before it validates anything (a bad size is not told apart)', async () => {
    const res = await postMultipart(`${priv.url}/projects/quiet/images`, [{ field: 'file', filename: 'a.jpg', data: ROCKET }], owner.headers);
    const { image_id } = (await res.json()) as Uploaded;
    for (const url of [`/projects/quiet/images/${image_id}?size=huge`, `/projects/quiet/images/${image_id}?size=thumb`, '/projects/a.b/images', '/projects/quiet/thumbnail']) {
      await expectProblem(await fetch(`${priv.url}${url}`), 401);
    }
    // With credentials, the bad size is what it is.
    await expectProblem(await fetch(`${priv.url}/projects/quiet/images/${image_id}?size=huge`, { headers: owner.headers }), 422);
  });

  it('answers someone else\'s image exactly as an image that does not exist', async () => {
    const res = await postMultipart(`${priv.url}/projects/hidden/images`, [{ field: 'file', filename: 'a.jpg', data: ROCKET }], owner.headers);
    const { image_id } = (await res.json()) as Uploaded;
    const bodies: unknown[] = [];
    for (const url of [`/projects/hidden/images/${image_id}`, `/projects/hidden/images/${'0'.repeat(image_id.length)}`, `/projects/never-made/images/${image_id}`]) {
      const answer = await fetch(`${priv.url}${url}?size=thumb`, { headers: other.headers });
      expect(answer.status, url).toBe(404);
      bodies.push(await answer.json());
    }
    expect(bodies[1]).toEqual(bodies[0]);
    expect(bodies[2]).toEqual(bodies[0]);
  });

  it('answers 401 without credentials before looking anything up: a project that exists and one never created answer alike', async () => {
    const res = await postMultipart(`${priv.url}/projects/exists/images`, [{ field: 'file', filename: 'a.jpg', data: ROCKET }], owner.headers);
    expect(res.status).toBe(201);
    const { image_id } = (await res.json()) as Uploaded;
    // Also once the image's row is cached by a read of its owner.
    await (await fetch(`${priv.url}/projects/exists/images/${image_id}?size=thumb`, { headers: owner.headers })).arrayBuffer();
    for (const project of ['exists', 'never-created']) {
      for (const url of [`/projects/${project}/images`, `/projects/${project}/images/${image_id}?size=thumb`, `/projects/${project}/images/${image_id}`, `/projects/${project}/thumbnail`]) {
        const anon = await fetch(`${priv.url}${url}`);
        expect([url, anon.status]).toEqual([url, 401]);
        expect(anon.headers.get('content-type')).toContain('application/problem+json');
        expect(anon.headers.get('etag')).toBeNull();
        await anon.arrayBuffer();
      }
    }
  });
});

describe('admins act on anyone\'s project', () => {
  const ADMIN = { ADMIN_EMAIL: 'root@example.com', ADMIN_PASSWORD: 'admin-password-123' };
  const API_KEY = 'static-service-key-for-the-gallery-tests';
  let srv: TestServer;
  let owner: TestUser;
  let stranger: TestUser;
  let adminHeaders: Record<string, string>;

  beforeAll(async () => {
    srv = await startServer({ ...ADMIN, API_KEY, GALLERY_PUBLIC_READ: 'false' });
    owner = await registerUser(srv.url, 'galleryowner');
    stranger = await registerUser(srv.url, 'stranger');
    const login = await fetch(`${srv.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD }),
    });
    expect(login.status).toBe(200);
    adminHeaders = { authorization: `Bearer ${((await login.json()) as { access_token: string }).access_token}` };
  });
  afterAll(async () => srv.close());

  it.each([
    ['an admin user', () => adminHeaders],
    ['the static API_KEY', () => ({ 'x-api-key': API_KEY })],
  ])('%s uploads to, reads, sets the primary of and deletes from another user\'s project, which stays the owner\'s', async (_who, headersOf) => {
    const headers = headersOf();
    const project = `owned-${headers['x-api-key'] ? 'key' : 'admin'}`;
    const post = (h: Record<string, string>) => postMultipart(`${srv.url}/projects/${project}/images`, [{ field: 'file', filename: 'a.jpg', data: ROCKET, type: 'image/jpeg' }], h);
    const first = await post(owner.headers);
    expect(first.status).toBe(201);
    const mine = (await first.json()) as Uploaded;
    // The rule being tested: a stranger is refused where the admin is let in.
    expect((await post(stranger.headers)).status).toBe(404);

    const added = await post(headers);
    expect(added.status).toBe(201);
    const theirs = (await added.json()) as Uploaded;
    expect(theirs.is_primary).toBe(false);

    const listing = await fetch(`${srv.url}/projects/${project}/images`, { headers });
    expect(listing.status).toBe(200);
    expect(((await listing.json()) as Listing).images.map((i) => i.image_id)).toEqual([mine.image_id, theirs.image_id]);
    const image = await fetch(`${srv.url}${mine.urls.thumb}`, { headers });
    expect(image.status).toBe(200);
    await image.arrayBuffer();

    const put = await fetch(`${srv.url}/projects/${project}/primary/${theirs.image_id}`, { method: 'PUT', headers });
    expect(put.status).toBe(200);
    const cover = await fetch(`${srv.url}/projects/${project}/thumbnail`, { headers });
    expect(cover.status).toBe(200);
    const theirsThumb = await fetch(`${srv.url}${theirs.urls.thumb}`, { method: 'HEAD', headers });
    expect(cover.headers.get('etag')).toBe(theirsThumb.headers.get('etag'));
    await cover.arrayBuffer();

    expect((await fetch(`${srv.url}/projects/${project}/images/${theirs.image_id}`, { method: 'DELETE', headers })).status).toBe(204);
    expect((await fetch(`${srv.url}/projects/${project}/images/${mine.image_id}`, { method: 'DELETE', headers: stranger.headers })).status).toBe(404);

    // The owner still owns it, and sees what the admin did.
    const after = await fetch(`${srv.url}/projects/${project}/images`, { headers: owner.headers });
    expect(after.status).toBe(200);
    expect((await after.json()) as Listing).toMatchObject({ primary_image_id: mine.image_id, images: [{ image_id: mine.image_id }] });
    expect((await fetch(`${srv.url}/projects/${project}/images`, { headers: stranger.headers })).status).toBe(404);
  });
});
