/**
 * BlobStore: where image bytes live. Keys are built by the server from its
 * own ids (`gallery/<image_id>/thumb.jpg`), never from raw user input, and
 * `assertKey` refuses anything else. Implementations: fs.ts (default, atomic
 * temp-then-rename under DATA_DIR/blobs) and s3.ts (an S3-compatible bucket,
 * STORAGE=s3), with cached.ts keeping small blobs in memory in front of either.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';

export interface BlobInfo {
  size: number;
  modifiedAt: Date;
}

export interface ListedBlob {
  key: string;
  modifiedAt: Date;
}

export interface ByteRange {
  /** Inclusive, as in HTTP. */
  start: number;
  end: number;
}

export interface BlobStore {
  readonly kind: string;
  /** Moves (or uploads) a finished local file to `key`; the file is gone afterwards. */
  putFile(key: string, localPath: string, contentType: string): Promise<void>;
  put(key: string, body: Buffer, contentType: string): Promise<void>;
  stat(key: string): Promise<BlobInfo | null>;
  /** Throws NotFound when the blob does not exist. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  readAll(key: string): Promise<Buffer>;
  /** The blob's bytes when this store already holds them in memory; never does I/O. */
  peek?(key: string): Buffer | undefined;
  /** Drops what `peek` would give for `key` (another process deleted the blob); the blob itself is left alone. */
  forget?(key: string): void;
  delete(key: string): Promise<void>;
  /** Removes every blob whose key starts with `prefix` + '/'. */
  deletePrefix(prefix: string): Promise<void>;
  /** Every blob whose key starts with `prefix` + '/', in no particular order (the orphan sweep reads it). */
  list(prefix: string): AsyncIterable<ListedBlob>;
  /**
   * Stores with directories (the local disk): removes the directories under
   * `prefix` that hold nothing and were last changed before `before` (a crash
   * between making one and writing into it leaves it), deepest first; with
   * `dryRun` only names them. Answers their keys. `prefix`'s own stays.
   */
  removeEmptyDirectories?(prefix: string, before: Date, dryRun: boolean): Promise<string[]>;
  /** Throws when the store cannot be written to and read back. */
  healthCheck(): Promise<void>;
}

const KEY = /^[a-z0-9][a-z0-9_-]*(\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$/;

/** Keys are lower-case path segments of safe characters; no `..`, no leading slash. */
export function assertKey(key: string): void {
  if (!KEY.test(key) || key.includes('..') || key.length > 512) {
    throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
  }
}

/**
 * A store's health check: writes a small blob under `health/<id>/`, reads it
 * back and deletes it; throws when any step fails. The blob is deleted
 * whatever the read did; one a crash leaves behind is an orphan the sweep
 * removes (modules/blob-sweep.ts: no row owns `health/`).
 */
export async function roundTrip(store: Pick<BlobStore, 'put' | 'readAll' | 'delete'>): Promise<void> {
  const key = `health/${randomBytes(6).toString('hex')}/probe`;
  // A write that failed (a full disk) may have made the probe's directory: it goes with the attempt.
  await store.put(key, Buffer.from('ok'), 'text/plain').catch(async (err: unknown) => {
    await store.delete(key).catch(() => undefined);
    throw err;
  });
  let back: Buffer;
  try {
    back = await store.readAll(key);
  } finally {
    await store.delete(key);
  }
  if (back.toString() !== 'ok') throw new Error('blob store read back different bytes');
}
