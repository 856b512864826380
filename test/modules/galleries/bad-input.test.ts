import http from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { pngBomb } from '../../helpers/png.js';
import { filesUnder } from '../../helpers/files.js';

const ROCKET = fixture('rocket_small_640x427.jpg');
const PATH = fixture('path_2560x1600_olympus_exif.jpg');

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer({ MAX_UPLOAD_SIZE: String(300_000) });
  user = await registerUser(server.url, 'mallory');
});
afterAll(async () => server.close());

/** Nothing stored: no image row, no blob, no temp file; and the server still answers /health. */
async function expectNothingStored(): Promise<void> {
  const rows = await server.ctx.db.kysely.selectFrom('gallery_images').select('image_id').execute();
  expect(rows).toEqual([]);
  expect(await filesUnder(path.join(server.dataDir, 'blobs', 'gallery'))).toEqual([]);
  expect(await filesUnder(path.join(server.dataDir, 'tmp'))).toEqual([]);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
}

async function expectProblem(res: Response, status: number, code?: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = (await res.json()) as { detail: string; code: string; status: number };
  expect(body.status).toBe(status);
  expect(body.detail.length).toBeGreaterThan(0);
  expect(body.detail).not.toMatch(/\/tmp|\/work|node_modules|at .*\.ts/);
  if (code) expect(body.code).toBe(code);
}

function send(name: string, data: Buffer, type = 'image/jpeg', field = 'file'): Promise<Response> {
  return postMultipart(`${server.url}/projects/bad/images`, [{ field, filename: name, data, type }], user.headers);
}

describe('bad uploads are refused and leave nothing behind', () => {
  it.each([
    ['a zero-byte file', 'empty.jpg', Buffer.alloc(0), 415],
    ['a truncated JPEG', 'cut.jpg', ROCKET.subarray(0, Math.floor(ROCKET.length * 0.6)), 415],
    ['a text file named .jpg', 'notes.jpg', Buffer.from('hello, this is not a photo\n'.repeat(20)), 415],
    ['an SVG with a script named .png', 'x.png', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), 415],
    ['HTML with a script named .png', 'x.png', Buffer.from('<!doctype html><html><script>alert(1)</script></html>'), 415],
  ])('%s', async (_what, name, data, status) => {
    await expectProblem(await send(name, data as Buffer), status as number);
    await expectNothingStored();
  });

  it('an HEIC whose HEVC codec this server cannot decode (as iPhones write): 415 unsupported_image, saying to send JPEG, PNG or WebP', async () => {
    const heic = fixture('rocket_hevc_160x107.heic');
    // It is a real HEIC: sharp reads its header and names the codec it cannot decode.
    expect(await sharp(heic).metadata()).toMatchObject({ format: 'heif', compression: 'hevc', width: 160, height: 107 });
    const res = await send('IMG_0001.HEIC', heic, 'image/heic');
    expect(res.status).toBe(415);
    const body = (await res.json()) as { code: string; detail: string };
    expect(body).toMatchObject({ code: 'unsupported_image', detail: 'This HEIC/HEIF image uses a codec this server cannot decode; send JPEG, PNG or WebP.' });
    await expectNothingStored();
  });

  it('a PNG declaring 30000×30000 pixels in a tiny file', async () => {
    const bomb = pngBomb(30000, 30000);
    expect(bomb.length).toBeLessThan(100_000);
    const res = await send('bomb.png', bomb, 'image/png');
    await expectProblem(res, 413, 'image_too_large');
    await expectNothingStored();
  });

  it('a 70000x1 PNG, under MAX_IMAGE_PIXELS but wider than any JPEG: 413, and the server carries on', async () => {
    const wide = await sharp({ create: { width: 70_000, height: 1, channels: 3, background: '#808080' } }).png().toBuffer();
    await expectProblem(await send('wide.png', wide, 'image/png'), 413, 'image_too_large');
    await expectNothingStored();
  });

  it('a valid JPEG over MAX_UPLOAD_SIZE, rejected while streaming', async () => {
    await expectProblem(await send('big.jpg', PATH), 413, 'file_too_large');
    await expectNothingStored();
  });

  it('a multipart body with no file field', async () => {
    await expectProblem(await send('a.jpg', ROCKET, 'image/jpeg', 'image'), 422);
    await expectNothingStored();
  });

  /** The image in `file`, then a second file in `field`. */
  function twoFiles(field: string): Promise<Response> {
    const image = { filename: 'a.jpg', data: ROCKET, type: 'image/jpeg' };
    return postMultipart(`${server.url}/projects/bad/images`, [{ field: 'file', ...image }, { ...image, field, filename: 'b.jpg' }], user.headers);
  }

  it('two files, even both in "file": 422 too_many_files, and neither is stored', async () => {
    await expectProblem(await twoFiles('file'), 422, 'too_many_files');
    await expectNothingStored();
  });

  it('a second file in another field, after the image: 422 naming that field, nothing stored', async () => {
    const res = await twoFiles('extra');
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ code: 'validation_error', errors: [{ field: 'body.extra', message: 'is not a file field of this upload' }] });
    await expectNothingStored();
  });

  it('a body that is not multipart', async () => {
    const res = await fetch(`${server.url}/projects/bad/images`, { method: 'POST', headers: { ...user.headers, 'content-type': 'image/jpeg' }, body: ROCKET });
    expect(res.status).toBe(415);
    await expectNothingStored();
  });
});

/** Raw request, so the client does not normalise `..` or encoded slashes away. */
function rawPost(pathname: string): Promise<{ status: number; type: string | undefined }> {
  const { port } = new URL(server.url);
  const boundary = 'kilnboundary';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
    ROCKET,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: pathname, headers: { ...user.headers, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('project_id must be 1–64 of [A-Za-z0-9_-]', () => {
  it.each([
    ['..', '/projects/../images'],
    ['a/b', '/projects/a%2Fb/images'],
    ['65 characters', `/projects/${'a'.repeat(65)}/images`],
    ['non-ASCII', `/projects/${encodeURIComponent('café')}/images`],
    ['a dot', '/projects/a.b/images'],
  ])('%s is refused', async (_what, pathname) => {
    const res = await rawPost(pathname);
    expect(res.status).toBe(422);
    expect(res.type).toContain('application/problem+json');
    await expectNothingStored();
  });

  it.each([
    ['a dot', 'a.b'],
    ['65 characters', 'a'.repeat(65)],
    ['non-ASCII', encodeURIComponent('café')],
  ])('%s is refused with 422 by every route that names a project, reads and writes alike, not answered as a project not found', async (_what, project) => {
    const requests: Array<[string, string]> = [
      ['GET', `/projects/${project}/images`],
      ['GET', `/projects/${project}/images/someimage`],
      ['GET', `/projects/${project}/thumbnail`],
      ['DELETE', `/projects/${project}/images/someimage`],
      ['PUT', `/projects/${project}/primary/someimage`],
    ];
    for (const [method, url] of requests) {
      const res = await fetch(`${server.url}${url}`, { method, headers: user.headers });
      expect([method, url, res.status]).toEqual([method, url, 422]);
      const body = (await res.json()) as { code: string; errors: Array<{ field: string }> };
      expect(body.code).toBe('validation_error');
      expect(body.errors.map((e) => e.field)).toEqual(['params.project_id']);
    }
  });

  it('64 characters is accepted', async () => {
    const res = await rawPost(`/projects/${'a'.repeat(64)}/images`);
    expect(res.status).toBe(201);
  });
});

describe('a refused upload claims nothing and changes nothing', () => {
  let own: TestServer;
  let first: TestUser;
  let second: TestUser;

  beforeAll(async () => {
    own = await startServer();
    first = await registerUser(own.url, 'first');
    second = await registerUser(own.url, 'second');
  });
  afterAll(async () => own.close());

  const post = (project: string, who: TestUser, name: string, data: Buffer) =>
    postMultipart(`${own.url}/projects/${project}/images`, [{ field: 'file', filename: name, data, type: 'image/jpeg' }], who.headers);
  const REFUSED: Array<[string, string, Buffer]> = [
    ['a truncated JPEG', 'cut.jpg', ROCKET.subarray(0, Math.floor(ROCKET.length * 0.6))],
    ['a text file named .jpg', 'notes.jpg', Buffer.from('hello, this is not a photo\n'.repeat(20))],
  ];

  it.each(REFUSED)('%s to a free project_id leaves it free: the next user to upload owns it', async (_what, name, data) => {
    const project = `free-${name.replace('.', '-')}`;
    await expectProblem(await post(project, first, name, data), 415);
    expect((await fetch(`${own.url}/projects/${project}/images`)).status).toBe(404);
    const taken = await post(project, second, 'r.jpg', ROCKET);
    expect(taken.status).toBe(201);
    expect(await taken.json()).toMatchObject({ project_id: project, is_primary: true });
    // The refused uploader did not become the owner either.
    expect((await post(project, first, 'r.jpg', ROCKET)).status).toBe(404);
    expect((await post(project, second, 'r.jpg', ROCKET)).status).toBe(201);
  });

  it.each(REFUSED)('%s to an existing project leaves its primary, listing and thumbnail as they were', async (_what, name, data) => {
    const project = `kept-${name.replace('.', '-')}`;
    expect((await post(project, first, 'a.jpg', ROCKET)).status).toBe(201);
    expect((await post(project, first, 'b.jpg', PATH)).status).toBe(201);
    const listing = async () => (await fetch(`${own.url}/projects/${project}/images`)).json();
    const thumbEtag = async () => {
      const res = await fetch(`${own.url}/projects/${project}/thumbnail`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      return res.headers.get('etag');
    };
    const [before, etagBefore] = [await listing(), await thumbEtag()];
    await expectProblem(await post(project, first, name, data), 415);
    expect(await listing()).toEqual(before);
    expect(await thumbEtag()).toBe(etagBefore);
  });
});
