/**
 * DURABLE_WRITES: a stored file's bytes reach the disk before it is renamed
 * into place, its name (and every directory made for it) after, and SQLite
 * commits wait for the disk. The disk calls are the real ones, watched by
 * spies on Node's FileHandle that call through and note what was on disk at
 * that moment: a power loss cannot be staged in a test, but the order of the
 * calls that survive one can be checked.
 */
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createContext } from '../../src/context.js';
import { FsBlobStore } from '../../src/platform/blobs/fs.js';
import { openDatabase } from '../../src/platform/db/index.js';
import { parentsOfCreated } from '../../src/platform/files.js';
import { tempDataDir, testConfig } from '../helpers/config.js';

const { dir, cleanup } = tempDataDir();
afterAll(cleanup);

interface DiskCall {
  call: 'datasync' | 'sync';
  /** Whether the watched target file existed when the call was made. */
  targetThere: boolean;
}

/** Spies on FileHandle's datasync and sync (calling through); each call notes whether `target()` existed then. */
let calls: DiskCall[] = [];
let target = '';
beforeAll(async () => {
  const probe = await open(path.join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void>; sync(): Promise<void> };
  await probe.close();
  const { datasync, sync } = proto;
  vi.spyOn(proto, 'datasync').mockImplementation(function (this: unknown) {
    calls.push({ call: 'datasync', targetThere: existsSync(target) });
    return datasync.call(this);
  });
  vi.spyOn(proto, 'sync').mockImplementation(function (this: unknown) {
    calls.push({ call: 'sync', targetThere: existsSync(target) });
    return sync.call(this);
  });
});
afterAll(() => vi.restoreAllMocks());
afterEach(() => {
  calls = [];
});

describe('FsBlobStore with durable writes', () => {
  const root = path.join(dir, 'durable', 'blobs');
  const store = new FsBlobStore(root, path.join(dir, 'durable', 'tmp'), true);
  // Made first, so that which directories the first write makes does not depend on the temp directory's.
  beforeAll(() => mkdir(path.join(dir, 'durable')));

  it('syncs the bytes before the rename and the new directories and the name after', async () => {
    target = path.join(root, 'gallery', 'img1', 'thumb.jpg');
    await store.put('gallery/img1/thumb.jpg', Buffer.from('thumb bytes'), 'image/jpeg');
    expect(await readFile(target, 'utf8')).toBe('thumb bytes');
    // The temp file's datasync, before the rename; the parents of blobs/, gallery/ and img1/
    // (all new, synced while the temp file is written); and img1/ itself, after the rename.
    expect(calls.filter((c) => c.call === 'datasync')).toEqual([{ call: 'datasync', targetThere: false }]);
    expect(calls.filter((c) => c.call === 'sync')).toHaveLength(4);
    expect(calls.at(-1)).toEqual({ call: 'sync', targetThere: true });
  });

  it('syncs only the file and its directory when the directory is there', async () => {
    target = path.join(root, 'gallery', 'img1', 'medium.jpg');
    await store.put('gallery/img1/medium.jpg', Buffer.from('medium bytes'), 'image/jpeg');
    expect(calls).toEqual([
      { call: 'datasync', targetThere: false },
      { call: 'sync', targetThere: true },
    ]);
  });

  it('syncs a moved file before it is renamed into place, and its directory after', async () => {
    const local = path.join(dir, 'durable', 'tmp', 'staged');
    await writeFile(local, 'original bytes');
    target = path.join(root, 'orders', 'o1', 'original.jpg');
    await store.putFile('orders/o1/original.jpg', local, 'image/jpeg');
    expect(await readFile(target, 'utf8')).toBe('original bytes');
    expect(existsSync(local)).toBe(false);
    // orders/ and o1/ are new: blobs/ and orders/ gain entries before the file's datasync.
    expect(calls).toEqual([
      { call: 'sync', targetThere: false },
      { call: 'sync', targetThere: false },
      { call: 'datasync', targetThere: false },
      { call: 'sync', targetThere: true },
    ]);
  });

  it('lets four writes into one new directory share its making', async () => {
    const sizes = ['original', 'medium', 'thumb', 'game'];
    target = path.join(root, 'gallery', 'img2', 'game.jpg');
    await Promise.all(sizes.map((s) => store.put(`gallery/img2/${s}.jpg`, Buffer.from(s), 'image/jpeg')));
    for (const s of sizes) expect(await readFile(path.join(root, 'gallery', 'img2', `${s}.jpg`), 'utf8')).toBe(s);
    // Four datasyncs and four syncs of img2/; gallery/ once, for the one mkdir.
    expect(calls.filter((c) => c.call === 'datasync')).toHaveLength(4);
    expect(calls.filter((c) => c.call === 'sync')).toHaveLength(5);
  });
});

describe('FsBlobStore by default', () => {
  it('leaves write-back to the kernel: no sync at all', async () => {
    const root = path.join(dir, 'default', 'blobs');
    const store = new FsBlobStore(root, path.join(dir, 'default', 'tmp'));
    target = path.join(root, 'gallery', 'img1', 'thumb.jpg');
    await store.put('gallery/img1/thumb.jpg', Buffer.from('x'), 'image/jpeg');
    const local = path.join(dir, 'default', 'tmp', 'staged');
    await writeFile(local, 'y');
    await store.putFile('orders/o1/original.jpg', local, 'image/jpeg');
    expect(calls).toEqual([]);
  });
});

describe('parentsOfCreated', () => {
  it('names the parent of each directory mkdir made, deepest first', () => {
    expect(parentsOfCreated('/d/blobs/gallery/img', undefined)).toEqual([]);
    expect(parentsOfCreated('/d/blobs/gallery/img', '/d/blobs/gallery/img')).toEqual(['/d/blobs/gallery']);
    expect(parentsOfCreated('/d/blobs/gallery/img', '/d/blobs')).toEqual(['/d/blobs/gallery', '/d/blobs', '/d']);
  });
});

describe('SQLite commits', () => {
  async function synchronous(durable: boolean | undefined): Promise<unknown> {
    const dataDir = path.join(dir, `sqlite-${String(durable)}`);
    await mkdir(dataDir, { recursive: true });
    const db = openDatabase(undefined, dataDir, durable === undefined ? {} : { durable });
    try {
      const { rows } = await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(db.kysely);
      return rows[0]?.synchronous;
    } finally {
      await db.close();
    }
  }

  it('wait for the disk when durable (FULL), and for checkpoints otherwise (NORMAL)', async () => {
    expect(await synchronous(true)).toBe(2);
    expect(await synchronous(false)).toBe(1);
    expect(await synchronous(undefined)).toBe(1);
  });
});

describe('DURABLE_WRITES', () => {
  it('makes the context store durably and commit durably', async () => {
    const dataDir = path.join(dir, 'context');
    const ctx = await createContext(testConfig(dataDir, { DURABLE_WRITES: 'true', JWT_SECRET: 'durable-test-secret-of-32-characters' }));
    try {
      calls = [];
      target = path.join(dataDir, 'blobs', 'gallery', 'img1', 'thumb.jpg');
      await ctx.blobs.put('gallery/img1/thumb.jpg', Buffer.from('t'), 'image/jpeg');
      expect(calls.filter((c) => c.call === 'datasync')).toEqual([{ call: 'datasync', targetThere: false }]);
      expect(calls.at(-1)).toEqual({ call: 'sync', targetThere: true });
      const { rows } = await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(ctx.db.kysely);
      expect(rows[0]?.synchronous).toBe(2);
    } finally {
      await ctx.close();
    }
  });
});
