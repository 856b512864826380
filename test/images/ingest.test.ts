import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { constants as perf, PerformanceObserver } from 'node:perf_hooks';
import { PassThrough, Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TooLarge, UnsupportedImage } from '../../src/errors.js';
import { discardStaged, stageUpload } from '../../src/images/ingest.js';
import { STAGED_BYTES_PER_COLLECTION } from '../../src/images/release.js';

const ROCKET = readFileSync(new URL('../fixtures/rocket_small_640x427.jpg', import.meta.url));

let tmpDir: string;
beforeEach(() => {
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-ingest-'));
});
afterEach(() => rmSync(tmpDir, { recursive: true, force: true }));

const leftovers = (): string[] => readdirSync(tmpDir);

function chunked(data: Buffer, size = 16 * 1024): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) pieces.push(data.subarray(i, i + size));
  return Readable.from(pieces);
}

describe('stageUpload', () => {
  it('stores a JPEG to a temp file with its size, SHA-256 and sniffed type', async () => {
    const staged = await stageUpload(chunked(ROCKET), { tmpDir, maxBytes: 10_000_000 });
    expect(staged).toMatchObject({ bytes: ROCKET.length, type: 'jpeg', mime: 'image/jpeg' });
    expect(staged.sha256).toBe(createHash('sha256').update(ROCKET).digest('hex'));
    expect(path.dirname(staged.path)).toBe(tmpDir);
    expect(readFileSync(staged.path).equals(ROCKET)).toBe(true);
    await discardStaged(staged);
    expect(leftovers()).toEqual([]);
    await discardStaged(staged); // twice is fine
  });

  it('discardStaged passes on a failure other than a file already gone, so a temp file that stays is not silent', async () => {
    // unlink refuses a directory (EISDIR on Linux, EPERM elsewhere) whoever runs the test: a path it cannot remove.
    await expect(discardStaged({ path: tmpDir })).rejects.toMatchObject({ code: expect.stringMatching(/^(EISDIR|EPERM)$/) as unknown });
  });

  it('rejects a file over the limit while it streams, and leaves no temp file', async () => {
    const maxBytes = 50_000;
    let pulled = 0;
    // An endless source: only an abort during streaming can end this test.
    const endless = new Readable({
      read() {
        pulled += 16 * 1024;
        this.push(Buffer.concat([ROCKET.subarray(0, 16 * 1024)]));
      },
    });
    const err = await stageUpload(endless, { tmpDir, maxBytes }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TooLarge);
    expect(err).toMatchObject({ status: 413, code: 'file_too_large', message: `The file is larger than the upload limit of ${maxBytes} bytes.` });
    expect(pulled).toBeLessThan(maxBytes + 5 * 16 * 1024);
    expect(endless.destroyed).toBe(true);
    expect(leftovers()).toEqual([]);
  });

  it('accepts a file of exactly the limit', async () => {
    const staged = await stageUpload(chunked(ROCKET), { tmpDir, maxBytes: ROCKET.length });
    expect(staged.bytes).toBe(ROCKET.length);
  });

  it('treats a stream that ends truncated (multipart fileSize limit) as too large', async () => {
    const part = new PassThrough() as PassThrough & { truncated?: boolean };
    part.end(ROCKET.subarray(0, 30_000));
    part.truncated = true;
    await expect(stageUpload(part, { tmpDir, maxBytes: 10_000_000 })).rejects.toMatchObject({ status: 413, code: 'file_too_large' });
    expect(leftovers()).toEqual([]);
  });

  it('maps the multipart plugin limit error to file_too_large', async () => {
    const part = new Readable({
      read() {
        this.destroy(Object.assign(new Error('request file too large'), { code: 'FST_REQ_FILE_TOO_LARGE' }));
      },
    });
    await expect(stageUpload(part, { tmpDir, maxBytes: 10 })).rejects.toMatchObject({ status: 413, code: 'file_too_large' });
    expect(leftovers()).toEqual([]);
  });

  it('rejects zero bytes as empty_file (415)', async () => {
    const err = await stageUpload(Readable.from([]), { tmpDir, maxBytes: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedImage);
    expect(err).toMatchObject({ status: 415, code: 'empty_file' });
    expect(leftovers()).toEqual([]);
  });

  it.each([
    ['a text file named photo.jpg', Buffer.from('just some text pretending to be a photo\n'.repeat(50))],
    ['an SVG with a script named image.png', Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>')],
    ['an HTML page with a script named image.png', Buffer.from('<!DOCTYPE html><html><body><script>fetch("/steal")</script></body></html>')],
    ['a GIF', Buffer.concat([Buffer.from('GIF89a'), Buffer.alloc(100)])],
  ])('rejects %s as unsupported_image and removes the temp file', async (_name, body) => {
    const err = await stageUpload(chunked(body), { tmpDir, maxBytes: 10_000_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 415, code: 'unsupported_image' });
    expect(leftovers()).toEqual([]);
  });

  it('refuses a sniffed type the caller does not accept (AVIF where only JPEG, PNG and WebP are), and removes the temp file', async () => {
    const avif = await sharp(ROCKET).avif({ effort: 0 }).toBuffer();
    const err = await stageUpload(chunked(avif), { tmpDir, maxBytes: 10_000_000, accept: new Set(['jpeg', 'png', 'webp']) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedImage);
    expect(err).toMatchObject({ status: 415, code: 'unsupported_image', message: 'The file is not an accepted image (JPEG, PNG or WebP).' });
    expect(leftovers()).toEqual([]);
    // Without `accept` every type the sniffer knows stays accepted (galleries, AI edits, product images).
    const staged = await stageUpload(chunked(avif), { tmpDir, maxBytes: 10_000_000 });
    expect(staged).toMatchObject({ type: 'avif', mime: 'image/avif', bytes: avif.length });
    await discardStaged(staged);
  });

  it('sniffs the first 64 bytes however the stream splits them: an AVIF brand listed last in a long ftyp box, sent a byte at a time', async () => {
    // A 64-byte ftyp box: the generic HEIF brand first, twelve compatible brands, and avif last (bytes 60-63).
    const brands = ['mif1', 'miaf', 'MA1B', 'iso8', 'MiHE', 'MiPr', 'mif2', 'MiHA', 'MiHB', 'msf1', 'iso9', 'avif'];
    const box = Buffer.alloc(16 + 4 * brands.length);
    box.writeUInt32BE(box.length, 0);
    box.write('ftyp', 4, 'latin1');
    box.write('mif1', 8, 'latin1');
    brands.forEach((b, i) => box.write(b, 16 + 4 * i, 'latin1'));
    expect(box.length).toBe(64);
    const body = Buffer.concat([box, Buffer.alloc(4000)]);
    const pieces = [...Array.from(body.subarray(0, 64), (byte) => Buffer.from([byte])), body.subarray(64)];
    const staged = await stageUpload(Readable.from(pieces), { tmpDir, maxBytes: 10_000 });
    expect(staged).toMatchObject({ type: 'avif', mime: 'image/avif', bytes: body.length });
    expect(readFileSync(staged.path).equals(body)).toBe(true);
    await discardStaged(staged);
  });

  it('keeps only the first bytes of an upload for sniffing: the chunks already written are not held on to', async () => {
    v8.setFlagsFromString('--expose-gc'); // as images/release.ts reaches V8's collector
    const gc = vm.runInNewContext('gc') as () => void;
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 2; i++) {
        gc();
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const chunk = 1024 * 1024;
    const count = 64;
    let before = 0;
    let whileStaging = 0;
    async function* source(): AsyncGenerator<Buffer> {
      await settle();
      before = process.memoryUsage().arrayBuffers;
      const first = Buffer.alloc(chunk);
      ROCKET.copy(first);
      yield first;
      for (let i = 1; i < count; i++) yield Buffer.alloc(chunk, i); // each chunk its own memory, as from a socket
      // Every chunk has been handed to the file by now: what is still reachable is what staging keeps.
      await settle();
      whileStaging = process.memoryUsage().arrayBuffers;
    }
    const staged = await stageUpload(Readable.from(source()), { tmpDir, maxBytes: count * chunk });
    expect(staged.bytes).toBe(count * chunk);
    await discardStaged(staged);
    // 64 MiB went through; a few chunks in flight are fine, the whole upload is not.
    expect(whileStaging - before).toBeLessThan(8 * chunk);
  });

  it('never uses anything from the client for the file name', async () => {
    const a = await stageUpload(chunked(ROCKET), { tmpDir, maxBytes: 10_000_000 });
    const b = await stageUpload(chunked(ROCKET), { tmpDir, maxBytes: 10_000_000 });
    expect(a.path).not.toBe(b.path);
    expect(path.basename(a.path)).toMatch(/^upload-[0-9a-f]{32}$/);
    expect(statSync(a.path).mode & 0o077).toBe(0);
  });

  it('never lets more than 8 MiB staged wait for a young collection, so chunks already written give their memory back', async () => {
    let young = 0;
    let forced = 0;
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const { kind, flags } = (entry as unknown as { detail: { kind: number; flags: number } }).detail; // a 'gc' entry's detail
        if (kind !== perf.NODE_PERFORMANCE_GC_MINOR) continue;
        young++;
        if ((flags & perf.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) forced++;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
    // A JPEG's first bytes, then 5 x 8 MiB of filler in 64 KB chunks, as a socket delivers them.
    // V8 alone runs about one young collection in that much staging (dead chunks are outside its heap).
    const size = 5 * STAGED_BYTES_PER_COLLECTION;
    const body = Buffer.alloc(size);
    ROCKET.copy(body);
    const staged = await stageUpload(chunked(body, 64 * 1024), { tmpDir, maxBytes: size });
    await new Promise((resolve) => setTimeout(resolve, 50)); // GC entries are delivered asynchronously
    observer.disconnect();
    await discardStaged(staged);
    // One per 8 MiB at least; one may fold into the next while a collection waits for its turn.
    expect(young).toBeGreaterThanOrEqual(4);
    expect(forced).toBeGreaterThan(0);
  });
});

