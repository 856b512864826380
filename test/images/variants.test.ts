import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { constants as perf, PerformanceObserver } from 'node:perf_hooks';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { pngBomb } from '../helpers/png.js';
import { inspect } from '../../src/images/decode.js';
import { DecodeLimiter } from '../../src/images/limit.js';
import { configureImageEngine, decodeLoad, isSizeName, renderFromPixels, renderVariants, SIZE_NAMES, SIZES, type RenderedImage } from '../../src/images/variants.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');
const fixture = (name: string): string => path.join(FIXTURES, name);
const OPTS = { maxImagePixels: 50_000_000, jpegQuality: 85 };

let tmpDir: string;
beforeAll(() => {
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-variants-'));
});
afterAll(() => rmSync(tmpDir, { recursive: true, force: true }));

function tempFile(name: string, data: Buffer): string {
  const file = path.join(tmpDir, name);
  writeFileSync(file, data);
  return file;
}

const render = (file: string): Promise<RenderedImage> => renderVariants({ path: file }, SIZE_NAMES, OPTS);

function dims(image: RenderedImage): Record<string, [number, number]> {
  return Object.fromEntries(Object.entries(image.variants).map(([k, v]) => [k, [v.width, v.height]]));
}

describe('the size table', () => {
  it('has the four gallery sizes and knows its names', () => {
    expect(SIZE_NAMES).toEqual(['original', 'medium', 'thumb', 'game']);
    expect(SIZES.medium).toEqual({ kind: 'fit', max: 1600 });
    expect(isSizeName('thumb')).toBe(true);
    expect(isSizeName('huge')).toBe(false);
    expect(isSizeName('toString')).toBe(false);
  });
});

describe('renderVariants', () => {
  it('makes every size of a landscape photo, never enlarged, as real JPEGs whose stated sizes are true', async () => {
    const out = await render(fixture('path_2560x1600_olympus_exif.jpg'));
    expect([out.width, out.height]).toEqual([2560, 1600]);
    expect(dims(out)).toEqual({ original: [2560, 1600], medium: [1600, 1000], thumb: [400, 250], game: [50, 50] });
    for (const v of Object.values(out.variants)) {
      const meta = await sharp(v.data).metadata();
      expect([meta.format, meta.width, meta.height, meta.channels, meta.space]).toEqual(['jpeg', v.width, v.height, 3, 'srgb']);
      // Fast baseline coding with 4:2:0 chroma, as every camera writes (encode.ts).
      expect([meta.isProgressive, meta.chromaSubsampling]).toEqual([false, '4:2:0']);
      expect(v.bytes).toBe(v.data.length);
      expect(v.etag).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('makes every size a faithful picture of the photo, not an aliased one', async () => {
    // Against an independent reduction of the file with libvips' three-lobed Lanczos: Kiln's sizes
    // measure 33-40 dB (the quality-85 encode is most of the difference); point sampling, which
    // aliases fine detail, measures 30.5 dB and under before any encode.
    const file = fixture('path_2560x1600_olympus_exif.jpg');
    const out = await render(file);
    const psnr = (a: Buffer, b: Buffer): number => {
      let squares = 0;
      for (let i = 0; i < a.length; i++) squares += ((a[i] as number) - (b[i] as number)) ** 2;
      return 10 * Math.log10((255 * 255) / (squares / a.length));
    };
    for (const [name, v] of Object.entries(out.variants)) {
      const got = await sharp(v.data).raw().toBuffer();
      const reference = await sharp(file)
        .resize(v.width, v.height, { fit: name === 'game' ? 'cover' : 'fill', kernel: 'lanczos3' })
        .raw()
        .toBuffer();
      expect(got.length, name).toBe(reference.length);
      expect(psnr(got, reference), name).toBeGreaterThan(32);
    }
  });

  it('keeps a small photo at its size for original and medium, and still makes game exactly 50x50', async () => {
    const out = await render(fixture('rocket_small_640x427.jpg'));
    expect(dims(out)).toEqual({ original: [640, 427], medium: [640, 427], thumb: [400, 267], game: [50, 50] });
  });

  it("gives back a progressive JPEG's share of the decode budget for its coefficients as soon as the decode is over", async () => {
    const photo = await sharp(fixture('path_2560x1600_olympus_exif.jpg')).jpeg({ progressive: true, chromaSubsampling: '4:4:4' }).toBuffer();
    const file = tempFile('progressive-444.jpg', photo);
    const header = await inspect(file, OPTS.maxImagePixels);
    expect(header.heldCost).toBeLessThan(header.decodeCost);
    // The main thread is free while sharp works on the thread pool: watch what the render holds, turn by turn.
    const held = new Set<number>();
    let done = false;
    const rendering = render(file).finally(() => (done = true));
    while (!done) {
      const { running, usedBytes } = decodeLoad();
      if (running === 1) held.add(usedBytes);
      await new Promise((r) => setImmediate(r));
    }
    await rendering;
    expect([...held]).toEqual([header.decodeCost, header.heldCost]);
  });

  it('renders images up to a 4K frame two to a core, and larger ones one to a core', async () => {
    configureImageEngine({ concurrency: 2 });
    try {
      /** The most renders running at once while three of one image render together. */
      const peakOfThree = async (file: string): Promise<number> => {
        let peak = 0;
        let done = false;
        const all = Promise.all([render(file), render(file), render(file)]).finally(() => (done = true));
        while (!done) {
          peak = Math.max(peak, decodeLoad().running);
          await new Promise((r) => setImmediate(r));
        }
        await all;
        return peak;
      };
      const noise = (width: number, height: number): Promise<Buffer> =>
        sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).jpeg({ quality: 80 }).toBuffer();
      // 3840x2160 takes half a core: on two cores all three run at once (a render of it lasts far longer than the others take to start).
      expect(await peakOfThree(tempFile('uhd.jpg', await noise(3840, 2160)))).toBe(3);
      // One row more takes a whole core: never more than two at once.
      expect(await peakOfThree(tempFile('uhd-plus.jpg', await noise(3840, 2161)))).toBe(2);
    } finally {
      configureImageEngine({});
    }
  });

  it("collects a large photo's dead pixels right after its render (two forced full collections), and leaves a small one's to V8", async () => {
    /** Full collections asked for (not V8's own) while `work` runs. */
    const forcedFullCollections = async (work: () => Promise<unknown>): Promise<number> => {
      let forced = 0;
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          const { kind, flags } = (entry as unknown as { detail: { kind: number; flags: number } }).detail; // a 'gc' entry's detail
          if (kind === perf.NODE_PERFORMANCE_GC_MAJOR && (flags & perf.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) forced++;
        }
      });
      observer.observe({ entryTypes: ['gc'] });
      await work();
      await new Promise((resolve) => setTimeout(resolve, 50)); // GC entries are delivered asynchronously
      observer.disconnect();
      return forced;
    };
    // 4000x3000: 36 MB of decoded pixels, over the 32 MiB at which a render collects; the rocket's are 0.8 MB.
    const large = tempFile('large-12mp.jpg', await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#4080c0' } }).jpeg().toBuffer());
    expect(await forcedFullCollections(() => render(large))).toBeGreaterThanOrEqual(2);
    expect(await forcedFullCollections(() => render(fixture('rocket_small_640x427.jpg')))).toBe(0);
  });

  it('makes only the sizes asked for', async () => {
    const out = await renderVariants({ path: fixture('rocket_small_640x427.jpg') }, ['thumb'], OPTS);
    expect(Object.keys(out.variants)).toEqual(['thumb']);
  });

  it.each(['orient_1.jpg', 'orient_3.jpg', 'orient_6.jpg', 'orient_8.jpg'])(
    'applies EXIF orientation of %s: a 1200x1802 portrait that looks like orient_1',
    async (name) => {
      const out = await render(fixture(name));
      expect([out.width, out.height]).toEqual([1200, 1802]);
      expect(dims(out)).toEqual({ original: [1200, 1802], medium: [1065, 1600], thumb: [266, 400], game: [50, 50] });
      // Same picture, not just the same box: compare the thumbs pixel by pixel.
      const reference = await render(fixture('orient_1.jpg'));
      const a = await sharp(out.variants.thumb.data).raw().toBuffer();
      const b = await sharp(reference.variants.thumb.data).raw().toBuffer();
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff += Math.abs((a[i] as number) - (b[i] as number));
      expect(diff / a.length).toBeLessThan(3);
      expect((await sharp(out.variants.original.data).metadata()).orientation).toBeUndefined();
    },
  );

  describe('every EXIF orientation, 1-8', () => {
    const ROCKET = fixture('rocket_small_640x427.jpg');
    /** The rocket stored under orientation n: what a camera held sideways or a mirroring app writes. */
    const tagged = async (n: number): Promise<string> => tempFile(`rocket_o${n}.jpg`, await sharp(ROCKET).withMetadata({ orientation: n }).jpeg({ quality: 95 }).toBuffer());
    const meanDiff = (a: Buffer, b: Buffer): number => {
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff += Math.abs((a[i] as number) - (b[i] as number));
      return diff / a.length;
    };

    it.each([1, 2, 3, 4, 5, 6, 7, 8])('shows orientation %i as libvips turns it: pixel for pixel, and in every size', async (n) => {
      const file = await tagged(n);
      const shown = await sharp(file, { autoOrient: true }).raw().toBuffer({ resolveWithObject: true });
      const out = await renderVariants({ path: file }, SIZE_NAMES, { ...OPTS, keepPixels: 'original' });
      // The kept pixels are the decode turned by the renderer: equal to libvips' own, pixel for pixel.
      expect([out.pixels?.width, out.pixels?.height]).toEqual([shown.info.width, shown.info.height]);
      expect(out.pixels?.data.equals(shown.data)).toBe(true);
      const quarter = n >= 5;
      expect([out.width, out.height]).toEqual(quarter ? [427, 640] : [640, 427]);
      expect(dims(out)).toEqual(quarter ? { original: [427, 640], medium: [427, 640], thumb: [267, 400], game: [50, 50] } : { original: [640, 427], medium: [640, 427], thumb: [400, 267], game: [50, 50] });
      // Each encoded size is that picture, not a mirror or a turn of it.
      const original = await sharp(out.variants.original.data).raw().toBuffer();
      // JPEG at quality 85 moves a pixel by ~2 on average; a mirror or a wrong turn by 20-35.
      expect(meanDiff(original, shown.data)).toBeLessThan(2.5);
      const mirrored = await sharp(shown.data, { raw: shown.info }).flop().raw().toBuffer();
      expect(meanDiff(original, mirrored)).toBeGreaterThan(10);
      const thumb = await sharp(out.variants.thumb.data).raw().toBuffer();
      const expectedThumb = await sharp(shown.data, { raw: shown.info }).resize(400, 400, { fit: 'inside' }).raw().toBuffer();
      expect(meanDiff(thumb, expectedThumb)).toBeLessThan(3);
      const game = await sharp(out.variants.game.data).raw().toBuffer();
      const expectedGame = await sharp(shown.data, { raw: shown.info }).resize(50, 50, { fit: 'cover' }).raw().toBuffer();
      expect(meanDiff(game, expectedGame)).toBeLessThan(4);
      for (const v of Object.values(out.variants)) expect((await sharp(v.data).metadata()).orientation).toBeUndefined();
    });

    it.each([2, 4, 5, 7, 6])('turns a medium that is resized and encoded in one pipeline as orientation %i says', async (n) => {
      // 1200x1802: medium is a real reduction here (the rocket above fits 1600 as it is).
      const file = await tempFile(`portrait_o${n}.jpg`, await sharp(fixture('orient_1.jpg')).withMetadata({ orientation: n }).jpeg({ quality: 95 }).toBuffer());
      const shown = await sharp(file, { autoOrient: true }).raw().toBuffer({ resolveWithObject: true });
      const out = await renderVariants({ path: file }, ['original', 'medium'], OPTS);
      const medium = await sharp(out.variants.medium.data).raw().toBuffer({ resolveWithObject: true });
      const expected = await sharp(shown.data, { raw: shown.info }).resize(1600, 1600, { fit: 'inside' }).raw().toBuffer({ resolveWithObject: true });
      expect([medium.info.width, medium.info.height]).toEqual([expected.info.width, expected.info.height]);
      expect([out.variants.medium.width, out.variants.medium.height]).toEqual([expected.info.width, expected.info.height]);
      expect(meanDiff(medium.data, expected.data)).toBeLessThan(3);
      const mirrored = await sharp(expected.data, { raw: expected.info }).flop().raw().toBuffer();
      expect(meanDiff(medium.data, mirrored)).toBeGreaterThan(10);
    });

    it('budgets a turned photo like an upright one: it is decoded as stored, with no second copy to turn it into', async () => {
      const upright = await inspect(await tagged(1), OPTS.maxImagePixels);
      const turned = await inspect(await tagged(6), OPTS.maxImagePixels);
      expect(turned.orientation).toBe(6);
      expect([turned.width, turned.height]).toEqual([640, 427]);
      expect(turned.decodeCost).toBe(upright.decodeCost);
    });
  });

  it('strips EXIF, ICC and every other metadata from a camera file', async () => {
    const input = await sharp(fixture('path_2560x1600_olympus_exif.jpg')).metadata();
    expect(input.exif).toBeDefined(); // the fixture really carries camera data
    const out = await render(fixture('path_2560x1600_olympus_exif.jpg'));
    for (const v of Object.values(out.variants)) {
      const meta = await sharp(v.data).metadata();
      expect(meta.exif).toBeUndefined();
      expect(meta.icc).toBeUndefined();
      expect(meta.xmp).toBeUndefined();
      expect(meta.iptc).toBeUndefined();
      expect(v.data.includes(Buffer.from('OLYMPUS'))).toBe(false);
    }
  });

  it('converts CMYK to 3-channel sRGB', async () => {
    expect((await sharp(fixture('picos_cmyk_400x300.jpg')).metadata()).space).toBe('cmyk');
    const out = await render(fixture('picos_cmyk_400x300.jpg'));
    const meta = await sharp(out.variants.original.data).metadata();
    expect([meta.space, meta.channels]).toEqual(['srgb', 3]);
    // Not inverted or black: a landscape photo has a mid-range mean.
    const stats = await sharp(out.variants.original.data).stats();
    for (const c of stats.channels) expect(c.mean).toBeGreaterThan(40);
  });

  it('turns a 16-bit PNG into 8-bit', async () => {
    expect((await sharp(fixture('life_rgb16_300x200.png')).metadata()).depth).toBe('ushort');
    const out = await render(fixture('life_rgb16_300x200.png'));
    const meta = await sharp(out.variants.original.data).metadata();
    expect([meta.depth, meta.channels, meta.width, meta.height]).toEqual(['uchar', 3, 300, 200]);
  });

  it('flattens a transparent PNG on white', async () => {
    const file = fixture('dogs_rgba_200x300.png');
    const corner = await sharp(file).extract({ left: 0, top: 0, width: 1, height: 1 }).raw().toBuffer();
    expect(corner[3]).toBeLessThan(20); // the input corner really is transparent
    const out = await render(file);
    for (const v of [out.variants.original, out.variants.thumb]) {
      const px = await sharp(v.data).extract({ left: 0, top: 0, width: 1, height: 1 }).raw().toBuffer();
      expect([...px].every((c) => c > 240)).toBe(true);
    }
  });

  it('refuses a PNG that declares 30000x30000 from its header, before decoding', async () => {
    const bomb = tempFile('bomb.png', pngBomb(30_000, 30_000));
    expect(readFileSync(bomb).length).toBeLessThan(200);
    // Every decode is admitted by the process's DecodeLimiter first: the bomb must never get that far.
    const admitted = vi.spyOn(DecodeLimiter.prototype, 'run');
    try {
      await expect(render(bomb)).rejects.toMatchObject({ status: 413, code: 'image_too_large' });
      expect(admitted).not.toHaveBeenCalled();
    } finally {
      admitted.mockRestore();
    }
  });

  it.each([
    [70_000, 1],
    [1, 70_000],
    [65_501, 2],
  ])('refuses a %ix%i image (a side no JPEG can hold) as image_too_large, before decoding', async (width, height) => {
    const wide = tempFile(`wide-${width}x${height}.png`, await sharp({ create: { width, height, channels: 3, background: '#808080' } }).png().toBuffer());
    const admitted = vi.spyOn(DecodeLimiter.prototype, 'run');
    try {
      await expect(render(wide)).rejects.toMatchObject({ status: 413, code: 'image_too_large' });
      expect(admitted).not.toHaveBeenCalled();
    } finally {
      admitted.mockRestore();
    }
  });

  it('renders a 65500x1 image, the widest libjpeg writes', async () => {
    const widest = tempFile('widest.png', await sharp({ create: { width: 65_500, height: 1, channels: 3, background: '#808080' } }).png().toBuffer());
    expect(dims(await render(widest)).original).toEqual([65_500, 1]);
  });

  it('a size that fails while a later one is still being made fails the render, and nothing is left unhandled', async () => {
    // Past the header check (renderFromPixels takes decoded pixels): the full-size JPEG encode fails
    // while the crop for `game` is still being made. An unhandled rejection would end the test run.
    const unhandled: unknown[] = [];
    const record = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      const pixels = { data: Buffer.alloc(70_000 * 50 * 3, 128), width: 70_000, height: 50 };
      await expect(renderFromPixels(['original', 'game'], 85, 1, [pixels], {}, undefined)).rejects.toThrow(/too large for the JPEG format/);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
    }
  });

  it('refuses a truncated JPEG instead of making a half-grey picture', async () => {
    const whole = readFileSync(fixture('rocket_small_640x427.jpg'));
    const cut = tempFile('cut.jpg', whole.subarray(0, Math.floor(whole.length * 0.6)));
    await expect(render(cut)).rejects.toMatchObject({ status: 415, code: 'corrupt_image' });
  });

  it('takes a JPEG with stray bytes before a marker, a harmless decoder warning some cameras cause', async () => {
    const whole = await sharp(fixture('rocket_small_640x427.jpg')).jpeg({ quality: 90 }).toBuffer();
    const dqt = whole.indexOf(Buffer.from([0xff, 0xdb]));
    // libjpeg warns "Corrupt JPEG data: 4 extraneous bytes before marker 0xdb" and decodes the picture whole.
    const stray = tempFile('stray-bytes.jpg', Buffer.concat([whole.subarray(0, dqt), Buffer.from([1, 2, 3, 4]), whole.subarray(dqt)]));
    const out = await render(stray);
    expect(dims(out)).toEqual({ original: [640, 427], medium: [640, 427], thumb: [400, 267], game: [50, 50] });
  });

  it('refuses bytes that only start like a PNG', async () => {
    const fake = tempFile('fake.png', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(300, 7)]));
    await expect(render(fake)).rejects.toMatchObject({ status: 415, code: 'corrupt_image' });
  });
});

