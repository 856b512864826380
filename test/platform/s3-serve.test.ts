/**
 * `kiln serve` with STORAGE=s3, end to end: a real server process whose
 * blobs live in a bucket of the local S3-compatible server (test/helpers/s3.ts)
 * and nowhere on its disk.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../helpers/config.js';
import { MAIN, startKiln, type KilnProcess } from '../helpers/process.js';
import { startLocalS3, type LocalS3 } from '../helpers/s3.js';
import { fixture, postMultipart } from '../helpers/upload.js';
import { registerUser, type TestUser } from '../helpers/users.js';

const ROCKET = fixture('rocket_small_640x427.jpg');

describe('kiln serve on S3', () => {
  let s3: LocalS3;
  let kiln: KilnProcess;
  let user: TestUser;
  const data = tempDataDir();

  beforeAll(async () => {
    s3 = await startLocalS3(['shop-images']);
    kiln = await startKiln({ DATA_DIR: data.dir, ...s3.env('shop-images', 'kiln') });
    user = await registerUser(kiln.url);
  }, 30_000);

  afterAll(async () => {
    await kiln?.stop();
    await s3?.close();
    data.cleanup();
  });

  const objects = (): Map<string, { body: Buffer }> => s3.buckets.get('shop-images') as Map<string, { body: Buffer }>;

  it('is healthy, with its blob store checked in the bucket', async () => {
    const res = await fetch(`${kiln.url}/health`);
    expect(res.status).toBe(200);
    expect(s3.requests.some((r) => r.startsWith('PUT /shop-images/kiln/health/'))).toBe(true);
  });

  it('stores every size of an upload in the bucket, under its prefix, and serves them from there', async () => {
    const up = await postMultipart(`${kiln.url}/projects/s3shop/images`, [{ field: 'file', filename: 'rocket.jpg', data: ROCKET }], user.headers);
    expect(up.status).toBe(201);
    const { image_id } = (await up.json()) as { image_id: string };
    const keys = [...objects().keys()].filter((k) => k.includes(image_id)).sort();
    expect(keys).toHaveLength(4);
    for (const k of keys) expect(k.startsWith('kiln/')).toBe(true);
    // Nothing of the image on the local disk: DATA_DIR holds the database and secrets only.
    expect(readdirSync(data.dir)).not.toContain('blobs');

    const thumb = await fetch(`${kiln.url}/projects/s3shop/images/${image_id}?size=thumb`);
    expect(thumb.status).toBe(200);
    const served = Buffer.from(await thumb.arrayBuffer());
    const stored = keys.map((k) => objects().get(k)?.body).find((b) => b?.equals(served));
    expect(stored).toBeDefined();

    const original = [...objects().entries()].find(([k]) => k.includes(image_id) && path.basename(k).startsWith('original'))?.[1].body as Buffer;
    const ranged = await fetch(`${kiln.url}/projects/s3shop/images/${image_id}?size=original`, { headers: { range: 'bytes=10-29' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(original.subarray(10, 30))).toBe(true);

    const deleted = await fetch(`${kiln.url}/projects/s3shop/images/${image_id}`, { method: 'DELETE', headers: user.headers });
    expect(deleted.status).toBe(204);
    expect([...objects().keys()].filter((k) => k.includes(image_id))).toEqual([]);
  }, 30_000);

  it('kiln blobs sweep removes an old orphan under its own prefix only, and keeps a live image', async () => {
    const up = await postMultipart(`${kiln.url}/projects/s3sweep/images`, [{ field: 'file', filename: 'rocket.jpg', data: ROCKET }], user.headers);
    const { image_id } = (await up.json()) as { image_id: string };
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    const orphan = { body: Buffer.from('left by a crash'), contentType: 'image/jpeg', modifiedAt: old, etag: '"o"' };
    objects().set('kiln/gallery/crashed-upload/thumb.jpg', orphan);
    // Another deployment's object in the same bucket: not this one's to judge.
    objects().set('other/gallery/crashed-upload/thumb.jpg', { ...orphan });

    const { stdout } = await promisify(execFile)(process.execPath, [MAIN, 'blobs', 'sweep'], {
      env: { ...process.env, LOG_LEVEL: 'silent', DATA_DIR: data.dir, ...s3.env('shop-images', 'kiln') },
    });
    expect(stdout).toContain('removed gallery/crashed-upload/\n');
    expect(objects().has('kiln/gallery/crashed-upload/thumb.jpg')).toBe(false);
    expect(objects().has('other/gallery/crashed-upload/thumb.jpg')).toBe(true);
    expect([...objects().keys()].filter((k) => k.includes(image_id))).toHaveLength(4);
  }, 30_000);

  it('answers 503 from /health once the bucket cannot be reached', async () => {
    await s3.close();
    const res = await fetch(`${kiln.url}/health`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { checks: { blob_store: { ok: boolean } } };
    expect(body.checks.blob_store.ok).toBe(false);
  }, 30_000);
});
