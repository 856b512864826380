import { pbkdf2 } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { streamToNewFile, sweepStaleFiles } from '../../src/platform/files.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const through = () => new PassThrough();
const failing = (after: Buffer[]) =>
  new Readable({
    read() {
      const next = after.shift();
      if (next) this.push(next);
      else this.destroy(new Error('client went away'));
    },
  });

describe('streamToNewFile', () => {
  it('writes the whole stream, owner-only', async () => {
    const file = path.join(dir, 'a');
    await streamToNewFile(Readable.from([Buffer.from('hello '), Buffer.from('world')]), through(), file);
    expect(readFileSync(file, 'utf8')).toBe('hello world');
    expect(statSync(file).mode & 0o077).toBe(0);
  });

  it('removes the file when the source fails part-way', async () => {
    const file = path.join(dir, 'a');
    await expect(streamToNewFile(failing([Buffer.alloc(64 * 1024)]), through(), file)).rejects.toThrow('client went away');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves a file that already existed alone', async () => {
    const file = path.join(dir, 'a');
    writeFileSync(file, 'not ours');
    await expect(streamToNewFile(Readable.from([Buffer.from('x')]), through(), file)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(file, 'utf8')).toBe('not ours');
  });

  it('leaves no file when the source fails before the file is even open, with the thread pool busy', async () => {
    // The open and the removal both run on libuv threads; with other work on the pool they can
    // overlap, and a removal that does not wait for the open loses the race now and then.
    for (let i = 0; i < 400; i++) {
      for (let k = 0; k < 4; k++) pbkdf2('p', 's', 3000, 32, 'sha256', () => undefined);
      const file = path.join(dir, `f${i}`);
      await streamToNewFile(failing([]), through(), file).catch(() => undefined);
    }
    expect(readdirSync(dir)).toEqual([]);
  }, 30_000);
});

describe('sweepStaleFiles', () => {
  const HOUR = 60 * 60 * 1000;
  const aged = (name: string, ageMs: number) => {
    const file = path.join(dir, name);
    writeFileSync(file, 'x');
    const when = new Date(Date.now() - ageMs);
    utimesSync(file, when, when);
  };

  it('removes the files not written to for the given time, and nothing else', async () => {
    aged('upload-dead', 2 * HOUR);
    aged('blob-dead', HOUR + 1000);
    aged('upload-live', 1000);
    aged('upload-slow-client', HOUR - 60_000);
    mkdirSync(path.join(dir, 'a-directory'));
    expect(await sweepStaleFiles(dir, HOUR)).toBe(2);
    expect(readdirSync(dir).sort()).toEqual(['a-directory', 'upload-live', 'upload-slow-client']);
  });

  it('counts nothing in an empty directory', async () => {
    expect(await sweepStaleFiles(dir, HOUR)).toBe(0);
  });
});
