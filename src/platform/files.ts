/**
 * Temp files: written all or nothing, and swept when a killed process left them.
 *
 * streamToNewFile removes its file on any failure, and only once the file's write stream has
 * closed. A write stream opens its file on a libuv thread in the background, so a source that
 * fails at once can end the pipeline before the open has happened; removing the file then would
 * race the open, and the file could appear after its removal.
 */
import { createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

/** ENOENT: the file, or a directory on its path, does not exist. */
export function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/**
 * `mkdir -p`, one level at a time, for the directories a start makes
 * (synchronous: before anything is served). Node's recursive mkdir never
 * returns when a directory on the path exists yet answers ENOENT for a new
 * entry, as /proc does: it takes that for a missing parent, makes the
 * parent, which exists, and tries again. Here each missing level is made
 * once, from the top, and its error is the answer. A file where the
 * directory should be is EEXIST, as with Node's.
 */
export function makeDirectorySync(dir: string): void {
  const missing: string[] = [];
  // The root always exists, so the walk up ends.
  for (let d = path.resolve(dir); !existsSync(d); d = path.dirname(d)) missing.push(d);
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (err) {
      // Another process made it meanwhile: checked below like any existing one.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  if (!statSync(dir).isDirectory()) throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${dir}'`), { code: 'EEXIST' });
}

type Source = NodeJS.ReadableStream | AsyncIterable<Buffer | string>;
type Step = NodeJS.ReadWriteStream | ((input: AsyncIterable<Buffer | string>) => AsyncIterable<Buffer>);

/**
 * Pipes `source` through `step` into `file`, which must not exist yet ('wx'). When the file did
 * exist it is not ours, and it is left alone.
 */
export async function streamToNewFile(source: Source, step: Step, file: string, mode = 0o600): Promise<void> {
  const sink = createWriteStream(file, { flags: 'wx', mode });
  try {
    await pipeline(source, step, sink);
  } catch (err) {
    if (!sink.closed) await new Promise<void>((resolve) => sink.once('close', () => resolve()));
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') await rm(file, { force: true });
    throw err;
  }
}

/** Opens `target` with `flags`, hands the handle to `use`, and closes it whatever `use` did. */
export async function withFile<T>(target: string, flags: string, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  const handle = await open(target, flags);
  try {
    return await use(handle);
  } finally {
    await handle.close();
  }
}

/** Opens `target` read-only and flushes it: `fdatasync` when `dataOnly`, else `fsync`. */
function flush(target: string, dataOnly: boolean): Promise<void> {
  return withFile(target, 'r', (handle) => (dataOnly ? handle.datasync() : handle.sync()));
}

/**
 * Asks the disk to keep what was written to `file` (fdatasync): its bytes, and
 * its size, survive a power loss once this returns. What DURABLE_WRITES adds
 * before a file is renamed into place.
 */
export function syncFile(file: string): Promise<void> {
  return flush(file, true);
}

/**
 * Asks the disk to keep the entries of each directory (fsync): a file renamed
 * into a directory, or a directory made in another, is only there after a
 * power loss once its parent was synced. One at a time, in the order given.
 */
export async function syncDirectories(dirs: Iterable<string>): Promise<void> {
  for (const dir of dirs) await flush(dir, false);
}

/**
 * The directories that gained an entry when `mkdir(dir, { recursive: true })`
 * answered `firstCreated` (the first directory it made): the parent of each
 * new directory, deepest first. None when nothing was made.
 */
export function parentsOfCreated(dir: string, firstCreated: string | undefined): string[] {
  if (firstCreated === undefined) return [];
  const parents: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    parents.push(path.dirname(d));
    if (d === firstCreated || path.dirname(d) === d) return parents;
  }
}

/**
 * Removes the files directly in `dir` not written to for `olderThanMs`: what a process killed
 * mid-upload left behind. Another process sharing the directory only ever has files it is
 * writing or about to read within the request or job at hand, far younger than that. Returns
 * how many went; a file that vanishes meanwhile is not an error. `only` narrows it to the
 * names it accepts, in a directory that also holds files to keep.
 */
export async function sweepStaleFiles(dir: string, olderThanMs: number, now = Date.now(), only: (name: string) => boolean = () => true): Promise<number> {
  let removed = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile() || !only(entry.name)) continue;
    const file = path.join(dir, entry.name);
    try {
      if (now - (await stat(file)).mtimeMs < olderThanMs) continue;
      await rm(file);
      removed++;
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
  }
  return removed;
}
