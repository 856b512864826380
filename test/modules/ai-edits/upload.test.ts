/** POST /api/v1/upload and GET /api/v1/files: PNG or JPEG by content, the size cap, owner-only serving; bad input stores nothing. */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { expectFailure, get, JPEG, post, SERVICE, startAiServer, upload } from './server.js';

let server: TestServer;
let alice: TestUser;
let bob: TestUser;
let PNG: Buffer;

beforeAll(async () => {
  server = await startAiServer({ MAX_UPLOAD_SIZE: '150000' });
  alice = await registerUser(server.url, 'alice');
  bob = await registerUser(server.url, 'bob');
  PNG = await sharp(JPEG).resize(200).png().toBuffer();
});
afterAll(async () => server.close());

async function uploadUrl(headers: Record<string, string>): Promise<string> {
  const res = await upload(server.url, headers);
  expect(res.status).toBe(201);
  return res.body.data.url;
}

async function fileRows(): Promise<number> {
  return (await server.ctx.db.kysely.selectFrom('ai_files').select('file_id').execute()).length;
}

describe('POST /api/v1/upload', () => {
  it('stores a JPEG and answers {file_id, path, url} with code 2000', async () => {
    const res = await upload(server.url, alice.headers);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ success: true, code: 2000 });
    const { file_id, path: key, url } = res.body.data;
    expect(file_id).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(key).toBe(`ai-edits/${file_id}/original.jpg`);
    expect(key).not.toContain(server.dataDir);
    expect(url).toBe(`/api/v1/files/${file_id}`);
    const served = await fetch(`${server.url}${url}`, { headers: alice.headers });
    expect(served.status).toBe(200);
    expect((await sharp(Buffer.from(await served.arrayBuffer())).metadata()).width).toBe(640);
  });

  it('stores a PNG', async () => {
    expect((await upload(server.url, alice.headers, PNG, 'image/png')).status).toBe(201);
  });

  it('serves an upload to its owner only (404 for anyone else)', async () => {
    const url = await uploadUrl(alice.headers);
    expectFailure(await get(server.url, url, bob.headers), 404, 2001, 'file_not_found');
    expectFailure(await get(server.url, url, SERVICE), 404, 2001, 'file_not_found');
  });

  const refused: Array<[string, () => Promise<Buffer>]> = [
    ['a GIF', async () => Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64')],
    ['a WebP', async () => sharp(JPEG).webp().toBuffer()],
    ['text', async () => Buffer.from('hello, I am not an image')],
    ['an empty file', async () => Buffer.alloc(0)],
  ];
  for (const [what, make] of refused) {
    it(`refuses ${what} with 415 and code 2001, storing nothing`, async () => {
      const before = await fileRows();
      const res = await upload(server.url, alice.headers, await make(), 'image/jpeg');
      expectFailure(res, 415, 2001);
      // The refusal names what this route takes, not every type the image library reads.
      if (what !== 'an empty file') expect((res.body as { message: string }).message).toBe('The file is not an accepted image (JPEG or PNG).');
      expect(await fileRows()).toBe(before);
    });
  }

  it('refuses a file over MAX_UPLOAD_SIZE with 413 and code 2001, storing nothing', async () => {
    const before = await fileRows();
    const big = fixture('path_2560x1600_olympus_exif.jpg');
    expectFailure(await upload(server.url, alice.headers, big), 413, 2001, 'file_too_large');
    expect(await fileRows()).toBe(before);
    expect(readdirSync(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it('wants the multipart field "file" (422) and a multipart body (415)', async () => {
    const res = await postMultipart(`${server.url}/api/v1/upload`, [{ field: 'other', filename: 'x.jpg', data: JPEG }], alice.headers);
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ success: false, code: 2001 });
    expectFailure(await post(server.url, '/api/v1/upload', alice.headers, { file: 'x' }), 415, 2001);
  });

  it('refuses two files in one upload with 422, storing neither', async () => {
    const before = await fileRows();
    const res = await postMultipart(
      `${server.url}/api/v1/upload`,
      [
        { field: 'file', filename: 'a.jpg', data: JPEG, type: 'image/jpeg' },
        { field: 'file', filename: 'b.jpg', data: JPEG, type: 'image/jpeg' },
      ],
      alice.headers,
    );
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ success: false, code: 2001 });
    expect(await fileRows()).toBe(before);
    expect(readdirSync(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });
});

describe('POST /api/v1/upload past RATE_LIMIT_UPLOAD', () => {
  let limited: TestServer;
  beforeAll(async () => {
    limited = await startAiServer({ RATE_LIMIT_UPLOAD: '2' });
  });
  afterAll(async () => limited.close());

  it('answers 429 in the AI-edit envelope (code 2001, data.error rate_limited), not problem+json, and stores nothing', async () => {
    const carol = await registerUser(limited.url, 'carol');
    const send = () => postMultipart(`${limited.url}/api/v1/upload`, [{ field: 'file', filename: 'photo', data: JPEG, type: 'image/jpeg' }], carol.headers);
    expect((await send()).status).toBe(201);
    expect((await send()).status).toBe(201);
    const res = await send();
    expect(res.status).toBe(429);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // The spec's failure envelope, member for member: {success: false, code: <route's x001>, message: <a sentence>, data: {error: <machine code>}}.
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ success: false, code: 2001, message: expect.stringMatching(/^[A-Z].*\.$/), data: { error: 'rate_limited' } });
    expect((await limited.ctx.db.kysely.selectFrom('ai_files').select('file_id').execute()).length).toBe(2);
  });
});
