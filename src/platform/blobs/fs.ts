import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, unlink, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { NotFound } from '../../errors.js';
import { isMissing, parentsOfCreated, syncDirectories, syncFile, withFile } from '../files.js';
import { assertKey, roundTrip, type BlobInfo, type BlobStore, type ByteRange, type ListedBlob } from './index.js';

/** Runs `write`, which leaves `temp` renamed away when it succeeds; when it fails, `temp` goes too (a full disk leaves half a file). */
async function removedOnFailure(temp: string, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/**
 * Blobs as files under `root`. Writes go to a temp file in `tmpDir` (same
 * file system) and are renamed into place, so a reader never sees half a file.
 *
 * Every file system call is a round trip through libuv's thread pool, which
 * the image work shares, and an upload stores four sizes into one new
 * directory. So the store creates `tmpDir` once (again only if something
 * removed it) and the four writes of one directory share one `mkdir`:
 * 24 calls per upload become 17.
 *
 * `durable` (DURABLE_WRITES): before a write resolves, the disk has the file's
 * bytes (fdatasync before the rename) and its name (fsync of the directory
 * after it, and of the parent of every directory the write made), so a row
 * committed after it never points at a file a power loss took. Off, the
 * kernel writes both back in its own time (seconds); a crash of the process
 * alone loses nothing either way.
 */
export class FsBlobStore implements BlobStore {
  readonly kind = 'fs';
  private tmpDirReady: Promise<void> | null = null;
  /** Directories being created now, so that concurrent writes into one wait for the same `mkdir`. */
  private readonly creating = new Map<string, Promise<void>>();

  constructor(
    private readonly root: string,
    private readonly tmpDir: string,
    private readonly durable = false,
  ) {}

  private ensureTmpDir(): Promise<void> {
    this.tmpDirReady ??= mkdir(this.tmpDir, { recursive: true }).then(
      () => undefined,
      (err: unknown) => {
        this.tmpDirReady = null;
        throw err;
      },
    );
    return this.tmpDirReady;
  }

  /** Makes `dir` and, when durable, syncs the parents that gained it: a write that finds the directory in place finds it kept. */
  private ensureDir(dir: string): Promise<void> {
    let pending = this.creating.get(dir);
    if (!pending) {
      pending = mkdir(dir, { recursive: true })
        .then((first) => (this.durable ? syncDirectories(parentsOfCreated(dir, first)) : undefined))
        .finally(() => this.creating.delete(dir));
      this.creating.set(dir, pending);
    }
    return pending;
  }

  private pathOf(key: string): string {
    assertKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  // Content types matter to object stores; files on disk are served with the type their metadata says.
  async putFile(key: string, localPath: string, _contentType?: string): Promise<void> {
    const target = this.pathOf(key);
    await this.ensureDir(path.dirname(target));
    if (this.durable) await syncFile(localPath);
    try {
      await rename(localPath, target);
    } catch (err) {
      // Another file system (EXDEV): copy to a temp name beside the target, then rename.
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
      await removedOnFailure(temp, async () => {
        await copyFile(localPath, temp);
        if (this.durable) await syncFile(temp);
        await rename(temp, target);
      });
      await unlink(localPath);
    }
    if (this.durable) await syncDirectories([path.dirname(target)]);
  }

  /** Writes `body` to the new file `temp`, and with `durable` waits for the disk to have it. */
  private async writeTemp(temp: string, body: Buffer): Promise<void> {
    if (!this.durable) return writeFile(temp, body, { flag: 'wx' });
    await withFile(temp, 'wx', async (handle) => {
      await handle.writeFile(body);
      await handle.datasync();
    });
  }

  async put(key: string, body: Buffer, _contentType?: string): Promise<void> {
    const target = this.pathOf(key);
    const dirReady = this.ensureDir(path.dirname(target));
    dirReady.catch(() => undefined); // awaited below, unless the write fails first
    const temp = path.join(this.tmpDir, `blob-${randomBytes(8).toString('hex')}`);
    await removedOnFailure(temp, async () => {
      await this.ensureTmpDir();
      try {
        await this.writeTemp(temp, body);
      } catch (err) {
        // The temp directory was removed under a running store: make it again, once.
        if (!isMissing(err)) throw err;
        this.tmpDirReady = null;
        await this.ensureTmpDir();
        await this.writeTemp(temp, body);
      }
      await dirReady;
      await rename(temp, target);
    });
    if (this.durable) await syncDirectories([path.dirname(target)]);
  }

  async stat(key: string): Promise<BlobInfo | null> {
    try {
      const s = await stat(this.pathOf(key));
      return { size: s.size, modifiedAt: s.mtime };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(key);
    const stream = createReadStream(file, range ? { start: range.start, end: range.end } : {});
    // Surface ENOENT as NotFound before the caller starts answering.
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err: NodeJS.ErrnoException) =>
        reject(isMissing(err) ? new NotFound('The file is missing.') : err),
      );
    });
    return stream;
  }

  async readAll(key: string): Promise<Buffer> {
    try {
      return await readFile(this.pathOf(key));
    } catch (err) {
      if (isMissing(err)) throw new NotFound('The file is missing.');
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    const target = this.pathOf(key);
    await rm(target, { force: true });
    await this.removeEmptyParents(key, target);
  }

  /** Removes the prefix's directory, and the parents that leaves empty (removeEmptyParents). */
  async deletePrefix(prefix: string): Promise<void> {
    const target = this.pathOf(prefix);
    await rm(target, { recursive: true, force: true });
    await this.removeEmptyParents(prefix, target);
  }

  /**
   * After a delete, removes each parent directory it left empty, up to but
   * not including the namespace's own (`gallery/<image_id>/` goes with its last
   * size, `orders/<order_id>/` with its last file group; `gallery/` and
   * `orders/` stay), so deleted images leave no empty directories behind.
   * `rmdir` refuses a directory that is not empty, so a parent another file
   * is still in, or a write is filling, stays.
   */
  private async removeEmptyParents(key: string, target: string): Promise<void> {
    const namespace = this.pathOf(key.split('/')[0] as string);
    for (let dir = path.dirname(target); dir.startsWith(namespace + path.sep); dir = path.dirname(dir)) {
      try {
        await rmdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || isMissing(err)) return;
        throw err;
      }
    }
  }

  async *list(prefix: string): AsyncIterable<ListedBlob> {
    yield* walk(this.pathOf(prefix), prefix);
  }

  async removeEmptyDirectories(prefix: string, before: Date, dryRun: boolean): Promise<string[]> {
    const found: string[] = [];
    await pruneEmpty(this.pathOf(prefix), prefix, before, dryRun, found, true);
    return found;
  }

  healthCheck(): Promise<void> {
    return roundTrip(this);
  }
}

/** The files under `dir`, depth first, as keys under `key`; a file or directory removed meanwhile is skipped. */
async function* walk(dir: string, key: string): AsyncIterable<ListedBlob> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return;
    throw err;
  }
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      yield* walk(file, `${key}/${entry.name}`);
      continue;
    }
    if (!entry.isFile()) continue;
    try {
      yield { key: `${key}/${entry.name}`, modifiedAt: (await stat(file)).mtime };
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
  }
}

/**
 * Whether `dir` holds nothing once its empty subdirectories are gone: those
 * last changed before `before` are removed (or with `dryRun` counted as
 * removed) and their keys added to `found`. The time is read before the
 * children go, since removing one changes it. The root (`keep`) stays. A
 * directory that gains an entry meanwhile is refused by `rmdir`, and stays.
 */
async function pruneEmpty(dir: string, key: string, before: Date, dryRun: boolean, found: string[], keep = false): Promise<boolean> {
  let changedAt: Date;
  let entries;
  try {
    changedAt = (await stat(dir)).mtime;
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
  let empty = true;
  for (const entry of entries) {
    if (!entry.isDirectory() || !(await pruneEmpty(path.join(dir, entry.name), `${key}/${entry.name}`, before, dryRun, found))) empty = false;
  }
  if (keep || !empty || changedAt >= before) return false;
  if (!dryRun) {
    try {
      await rmdir(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || isMissing(err)) return false;
      throw err;
    }
  }
  found.push(key);
  return true;
}
