/**
 * Temp files: written all or nothing, and swept when a killed process left them.
 *
 * streamToNewFile removes its file on any failure, and only once the file's write stream has
 * closed. A write stream opens its file on a libuv thread in the background, so a source that
 * fails at once can end the pipeline before the open has happened; removing the file then would
 * race the open, and the file could appear after its removal.
 */
import { createWriteStream } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

/** ENOENT: the file, or a directory on its path, does not exist. */
export function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
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

/**
 * Removes the files directly in `dir` not written to for `olderThanMs`: what a process killed
 * mid-upload left behind. Another process sharing the directory only ever has files it is
 * writing or about to read within the request or job at hand, far younger than that. Returns
 * how many went; a file that vanishes meanwhile is not an error.
 */
export async function sweepStaleFiles(dir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  let removed = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
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
