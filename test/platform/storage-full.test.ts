/**
 * Storage that cannot take a write: a disk that is full, a database that is
 * read-only. The answer says so (503 storage_full / storage_read_only, not
 * a bare 500), nothing is half stored, and the server takes writes again
 * once there is room, without a restart.
 */
import { appendFileSync, rmSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../helpers/server.js';
import { registerUser, type TestUser } from '../helpers/users.js';
import { fixture, postMultipart } from '../helpers/upload.js';
import { expectProblem } from '../helpers/problem.js';
import { canMountSmallDisk, filesUnder, lockDirectory, smallDisk } from '../helpers/files.js';
import { logDirectory } from '../helpers/logs.js';

const PATH = fixture('path_2560x1600_olympus_exif.jpg');
const canMount = canMountSmallDisk();

function upload(server: TestServer, user: TestUser, project: string): Promise<Response> {
  return postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'photo.jpg', data: PATH, type: 'image/jpeg' }], user.headers);
}

/** Image rows, blob files and temp files agree: as many of each image's files as there are rows, no temp file. */
async function expectWhole(server: TestServer, rows: number): Promise<void> {
  const images = await server.ctx.db.kysely.selectFrom('gallery_images').select('image_id').execute();
  expect(images).toHaveLength(rows);
  expect(await filesUnder(path.join(server.dataDir, 'blobs', 'gallery'))).toHaveLength(rows * 4);
  expect(await filesUnder(path.join(server.dataDir, 'tmp'))).toEqual([]);
  // No directory of a refused upload left behind either: one per image.
  const directories = await readdir(path.join(server.dataDir, 'blobs', 'gallery')).catch(() => []);
  expect(directories).toHaveLength(rows);
}


describe('storage that cannot take a write', () => {
  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a read-only database: 503 storage_read_only, nothing stored; writes work again once it is writable', async () => {
    const server = await startServer();
    cleanups.push(() => server.close());
    const owner = await registerUser(server.url, 'reader');
    expect((await upload(server, owner, 'ro')).status).toBe(201);

    await sql`pragma query_only = on`.execute(server.ctx.db.kysely);
    const refused = await upload(server, owner, 'ro');
    await expectProblem(refused, 503, 'storage_read_only');
    await expectWhole(server, 1);
    // Reads go on.
    expect((await fetch(`${server.url}/projects/ro/images`)).status).toBe(200);

    await sql`pragma query_only = off`.execute(server.ctx.db.kysely);
    expect((await upload(server, owner, 'ro')).status).toBe(201);
    await expectWhole(server, 2);
  });

  it('a blob directory the server may no longer write in (its owner or mode changed): 503 storage_not_writable, nothing stored; writes work again once it is fixed', async () => {
    const server = await startServer();
    cleanups.push(() => server.close());
    const owner = await registerUser(server.url, 'locked');
    expect((await upload(server, owner, 'locked')).status).toBe(201);

    const { unlock } = lockDirectory(path.join(server.dataDir, 'blobs', 'gallery'));
    cleanups.push(unlock);
    await expectProblem(await upload(server, owner, 'locked'), 503, 'storage_not_writable');
    await expectWhole(server, 1);

    unlock();
    expect((await upload(server, owner, 'locked')).status).toBe(201);
    await expectWhole(server, 2);
  });

  it('/health says which kind of failure (not_writable), logs it once when it starts and once when it is over, and leaves no probe directory', async () => {
    const logs = logDirectory<{ level: number; msg: string; checks?: unknown }>('info');
    cleanups.push(() => logs.remove());
    const server = await startServer(logs.env);
    const health = path.join(server.dataDir, 'blobs', 'health');
    await mkdir(health, { recursive: true });
    const { unlock } = lockDirectory(health);
    try {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${server.url}/health`);
        expect(res.status).toBe(503);
        expect(((await res.json()) as { checks: Record<string, unknown> }).checks.blob_store).toMatchObject({ ok: false, error: 'not_writable' });
      }
    } finally {
      unlock();
    }
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect(await readdir(health)).toEqual([]);
    await server.close();
    const lines = logs.lines().filter((l) => l.msg.startsWith('health check'));
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, 'health check failing: blob_store'],
      [30, 'health checks pass again'],
    ]);
  });

  it.runIf(canMount)('a full disk: 503 storage_full, nothing half stored; uploads work again once space is freed', async () => {
    const small = smallDisk(6);
    if (!small) throw new Error('could not mount a tmpfs');
    cleanups.push(() => small.remove());
    const server = await startServer({}, { dataDir: small.dir });
    cleanups.push(() => server.close());
    const owner = await registerUser(server.url, 'filler');

    const stored: string[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 20 && !refused; i++) {
      const res = await upload(server, owner, 'full');
      if (res.status === 201) stored.push(((await res.json()) as { image_id: string }).image_id);
      else refused = res;
    }
    expect(stored.length).toBeGreaterThan(0);
    expect(refused).toBeDefined();
    await expectProblem(refused as Response, 503, 'storage_full');
    await expectWhole(server, stored.length);
    // Filled to the last byte, the health probe says so, and its failed write leaves no directory behind.
    const filler = path.join(small.dir, 'filler');
    for (const size of [65536, 1024, 1]) {
      try {
        for (;;) appendFileSync(filler, Buffer.alloc(size));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { checks: Record<string, unknown> }).checks.blob_store).toMatchObject({ ok: false, error: 'full' });
    expect(await readdir(path.join(server.dataDir, 'blobs', 'health')).catch(() => [])).toEqual([]);
    rmSync(filler);

    // Room again: a delete frees an image's files, and the next upload is stored, no restart.
    const deleted = await fetch(`${server.url}/projects/full/images/${stored[0]}`, { method: 'DELETE', headers: owner.headers });
    expect(deleted.status).toBe(204);
    expect((await upload(server, owner, 'full')).status).toBe(201);
    await expectWhole(server, stored.length);
  }, 60_000);
});
