import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp, { type JpegOptions } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeOnce, inspect, wholeImageBytesPerPixel } from '../../src/images/decode.js';
import { DomainError } from '../../src/errors.js';

let tmpDir: string;
beforeAll(() => {
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-decode-'));
});
afterAll(() => rmSync(tmpDir, { recursive: true, force: true }));

async function jpeg(name: string, options: JpegOptions): Promise<string> {
  const file = path.join(tmpDir, name);
  const data = await sharp({ create: { width: 1000, height: 800, channels: 3, background: '#336699' } }).jpeg(options).toBuffer();
  writeFileSync(file, data);
  return file;
}

describe('the decode cost the limiter budgets with', () => {
  const MB = 1024 * 1024;
  const pixels = 1000 * 800;

  it('is the 3-byte result plus fixed decoder state for a baseline JPEG', async () => {
    const { decodeCost } = await inspect(await jpeg('baseline.jpg', { chromaSubsampling: '4:2:0' }), 50e6);
    expect(decodeCost).toBe(pixels * 3 + 16 * MB);
  });

  it('adds the whole-image coefficients of a progressive JPEG, half as many for 4:2:0 as for 4:4:4', async () => {
    const p420 = await inspect(await jpeg('p420.jpg', { progressive: true, chromaSubsampling: '4:2:0' }), 50e6);
    const p444 = await inspect(await jpeg('p444.jpg', { progressive: true, chromaSubsampling: '4:4:4' }), 50e6);
    expect(p420.decodeCost).toBeCloseTo(pixels * (3 + 3.45) + 16 * MB, -1);
    expect(p444.decodeCost).toBeCloseTo(pixels * (3 + 6.9) + 16 * MB, -1);
  });

  it('drops to the 3-byte result plus the fixed share once the decode is over, progressive or not', async () => {
    for (const options of [{ chromaSubsampling: '4:2:0' }, { progressive: true, chromaSubsampling: '4:4:4' }] satisfies JpegOptions[]) {
      const { decodeCost, heldCost } = await inspect(await jpeg(`held-${String(options.progressive)}.jpg`, options), 50e6);
      expect(heldCost).toBe(pixels * 3 + 16 * MB);
      expect(heldCost).toBeLessThanOrEqual(decodeCost);
    }
  });

  it('adds the wide copy of a 16-bit image, 6 bytes a pixel, to the decode only', async () => {
    const wide = await inspect(path.join(import.meta.dirname, '..', 'fixtures', 'life_rgb16_300x200.png'), 50e6);
    expect(wide.decodeCost).toBe(300 * 200 * (3 + 6) + 16 * MB);
    expect(wide.heldCost).toBe(300 * 200 * 3 + 16 * MB);
  });

  it('counts an unknown sample layout as the costliest', () => {
    expect(wholeImageBytesPerPixel(undefined)).toBe(wholeImageBytesPerPixel('4:4:4'));
    expect(wholeImageBytesPerPixel('4:2:2')).toBeLessThan(wholeImageBytesPerPixel('4:4:4'));
    expect(wholeImageBytesPerPixel('4:2:0')).toBeLessThan(wholeImageBytesPerPixel('4:2:2'));
  });
});

describe('a staged file that is gone', () => {
  it('is an internal error, not the image\'s: neither inspect nor the decode blames the upload with a 415', async () => {
    const gone = path.join(tmpDir, 'gone.jpg');
    for (const step of [() => inspect(gone, 50e6), () => decodeOnce(gone, 50e6, { srgbProfile: false })]) {
      const err = await step().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(DomainError);
      expect((err as Error).message).toMatch(/missing/);
    }
  });
});

describe('the pixel bound of inspect', () => {
  it('takes an image of exactly maxImagePixels and refuses one pixel fewer allowed as image_too_large', async () => {
    const file = await jpeg('bound.jpg', {});
    await expect(inspect(file, 1000 * 800)).resolves.toMatchObject({ width: 1000, height: 800 });
    await expect(inspect(file, 1000 * 800 - 1)).rejects.toMatchObject({ status: 413, code: 'image_too_large' });
  });
});
