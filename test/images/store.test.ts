import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobBatch, renderAndStore, storeRendered } from '../../src/images/store.js';
import { FsBlobStore } from '../../src/platform/blobs/fs.js';
import { tempDataDir } from '../helpers/config.js';
import { FIXTURES } from '../helpers/upload.js';

const { dir, cleanup } = tempDataDir();
afterAll(cleanup);
const disk = new FsBlobStore(path.join(dir, 'blobs'), path.join(dir, 'tmp'));
const log = pino({ level: 'silent' });
const photo = { path: path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg') };
const options = { maxImagePixels: 50e6, jpegQuality: 85 };
const sizes = ['original', 'medium', 'thumb', 'game'] as const;
type Size = (typeof sizes)[number];
let n = 0;
/** A fresh key prefix per test, so one test's blobs never answer for another's. */
const keys = () => {
  const prefix = `store-test/${++n}`;
  return (size: Size) => `${prefix}/${size}.jpg`;
};

/** The disk store, with every call to put recorded and, per size, a delay or a failure on top. */
function recordingStore(behave: Partial<Record<Size, { delayMs?: number; fail?: boolean }>> = {}) {
  const calls: string[] = [];
  const store = Object.create(disk) as FsBlobStore;
  store.put = async (key, data, type) => {
    calls.push(key);
    const size = path.basename(key, '.jpg') as Size;
    const rule = behave[size] ?? {};
    if (rule.delayMs) await new Promise((resolve) => setTimeout(resolve, rule.delayMs));
    if (rule.fail) throw new Error(`disk full writing ${size}`);
    return disk.put(key, data, type);
  };
  return { store, calls };
}

describe('renderAndStore', () => {
  it('stores every size under its key, and the row data matches the stored bytes', async () => {
    const keyOf = keys();
    const batch = new BlobBatch(disk, log);
    const stored = await renderAndStore(batch, photo, sizes, keyOf, options);
    expect(stored).toMatchObject({ width: 2560, height: 1600 });
    expect([...batch.keys].sort()).toEqual(sizes.map(keyOf).sort());
    for (const size of sizes) {
      const bytes = await disk.readAll(keyOf(size));
      expect(stored.variants[size]).toMatchObject({ bytes: bytes.length, etag: createHash('sha256').update(bytes).digest('hex') });
    }
    expect(stored.variants.game).toMatchObject({ width: 50, height: 50 });
  });

  it('fails with a write that failed, once every other write has settled, so a rollback leaves nothing', async () => {
    const keyOf = keys();
    const { store } = recordingStore({ thumb: { fail: true }, game: { delayMs: 300 } });
    const batch = new BlobBatch(store, log);
    await expect(renderAndStore(batch, photo, sizes, keyOf, options)).rejects.toThrow('disk full writing thumb');
    // The slow write had landed by the time the call failed, and the batch knows of it, and of the one that failed.
    expect([...batch.keys].sort()).toEqual(sizes.map(keyOf).sort());
    await batch.rollback();
    for (const size of sizes) expect(await disk.stat(keyOf(size))).toBeNull();
  });

  it('reports a render that fails, and stores nothing', async () => {
    const keyOf = keys();
    const truncated = path.join(dir, 'truncated.jpg');
    const bytes = await readFile(photo.path);
    await writeFile(truncated, bytes.subarray(0, bytes.length / 2));
    const { store, calls } = recordingStore();
    await expect(renderAndStore(new BlobBatch(store, log), { path: truncated }, sizes, keyOf, options)).rejects.toMatchObject({ code: 'corrupt_image' });
    expect(calls).toEqual([]);
  });
});

/** The disk store, with every put's content type recorded and the delete of some keys failing. */
function faultyDeletes(failing: (key: string) => boolean) {
  const types = new Map<string, string>();
  const store = Object.create(disk) as FsBlobStore;
  store.put = async (key, data, type) => {
    types.set(key, type ?? '(none)');
    return disk.put(key, data, type);
  };
  store.delete = async (key) => (failing(key) ? Promise.reject(new Error(`cannot delete ${key}`)) : disk.delete(key));
  return { store, types };
}

/** A logger whose warnings land in `lines`. */
function recordingLog() {
  const lines: Array<{ level: number; key?: string; msg: string }> = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; key?: string; msg: string }) });
  return { logger, lines };
}

describe('storeRendered', () => {
  it('writes every size as image/jpeg, the type the bucket serves it with', async () => {
    const keyOf = keys();
    const { store, types } = faultyDeletes(() => false);
    await storeRendered({ blobs: store, log }, photo, sizes, keyOf, options, async () => undefined);
    expect(Object.fromEntries(types)).toEqual(Object.fromEntries(sizes.map((size) => [keyOf(size), 'image/jpeg'])));
  });

  it('fails with the commit error, not a delete error, when the rollback cannot remove a blob: the orphan is logged and the others go', async () => {
    const keyOf = keys();
    const { store } = faultyDeletes((key) => key === keyOf('medium'));
    const { logger, lines } = recordingLog();
    const committed = new Error('row insert failed');
    await expect(storeRendered({ blobs: store, log: logger }, photo, sizes, keyOf, options, () => Promise.reject(committed))).rejects.toBe(committed);
    expect(await disk.stat(keyOf('medium'))).not.toBeNull();
    for (const size of ['original', 'thumb', 'game'] as const) expect(await disk.stat(keyOf(size))).toBeNull();
    expect(lines).toEqual([expect.objectContaining({ level: 40, key: keyOf('medium'), msg: 'blob delete failed' })]);
  });
});
