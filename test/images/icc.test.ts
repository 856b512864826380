import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeOnce, inspect } from '../../src/images/decode.js';
import { isSrgbProfile, srgbToLinear } from '../../src/images/icc.js';
import { renderVariants } from '../../src/images/variants.js';

const OLYMPUS = path.join(import.meta.dirname, '..', 'fixtures', 'path_2560x1600_olympus_exif.jpg');
const MAX_PIXELS = 50_000_000;

let tmpDir: string;
beforeAll(() => {
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-icc-'));
});
afterAll(() => rmSync(tmpDir, { recursive: true, force: true }));

/** The camera's embedded profile: HP's classic "sRGB IEC61966-2.1", a 1024-entry tone curve per channel. */
async function cameraProfile(): Promise<Buffer> {
  const { icc } = await sharp(OLYMPUS).metadata();
  if (!icc) throw new Error('the fixture lost its ICC profile');
  return icc;
}

/** A small saturated JPEG tagged with one of libvips' built-in profiles (srgb, p3, cmyk). */
async function taggedJpeg(profile: 'srgb' | 'p3'): Promise<string> {
  const file = path.join(tmpDir, `${profile}.jpg`);
  const data = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#e02010' } })
    .withIccProfile(profile)
    .jpeg({ quality: 95 })
    .toBuffer();
  writeFileSync(file, data);
  return file;
}

async function profileOf(file: string): Promise<Buffer | undefined> {
  return (await sharp(file).metadata()).icc;
}

/** Offset of a tag's data, from the profile's tag table. */
function tagOffset(icc: Buffer, name: string): number {
  const count = icc.readUInt32BE(128);
  for (let i = 0; i < count; i++) {
    const at = 132 + i * 12;
    if (icc.toString('latin1', at, at + 4) === name) return icc.readUInt32BE(at + 4);
  }
  throw new Error(`no ${name} tag`);
}

function renameTag(icc: Buffer, from: string, to: string): Buffer {
  const copy = Buffer.from(icc);
  const count = copy.readUInt32BE(128);
  for (let i = 0; i < count; i++) {
    const at = 132 + i * 12;
    if (copy.toString('latin1', at, at + 4) === from) copy.write(to, at, 'latin1');
  }
  return copy;
}

describe('isSrgbProfile', () => {
  it('recognises the sRGB profiles cameras and libvips embed', async () => {
    expect(isSrgbProfile(await cameraProfile())).toBe(true);
    expect(isSrgbProfile(await profileOf(await taggedJpeg('srgb')))).toBe(true);
  });

  it('refuses other colour spaces, and no profile at all', async () => {
    expect(isSrgbProfile(await profileOf(await taggedJpeg('p3')))).toBe(false);
    expect(isSrgbProfile(undefined)).toBe(false);
    expect(isSrgbProfile(Buffer.alloc(0))).toBe(false);
  });

  it('refuses a profile whose tone curve is a plain gamma 2.2 though its primaries are sRGB', async () => {
    const icc = Buffer.from(await cameraProfile());
    // The three TRC tags share one `curv`: make it a single gamma entry (u8Fixed8 2.2).
    const curve = tagOffset(icc, 'rTRC');
    icc.writeUInt32BE(1, curve + 8);
    icc.writeUInt16BE(Math.round(2.2 * 256), curve + 12);
    expect(isSrgbProfile(icc)).toBe(false);
    expect(Math.abs(0.5 ** 2.2 - srgbToLinear(0.5))).toBeGreaterThan(0.002);
  });

  it('refuses a profile whose red primary is moved', async () => {
    const icc = Buffer.from(await cameraProfile());
    const red = tagOffset(icc, 'rXYZ');
    icc.writeInt32BE(icc.readInt32BE(red + 8) + Math.round(0.01 * 65536), red + 8);
    expect(isSrgbProfile(icc)).toBe(false);
  });

  it('refuses a profile with lookup tables, which lcms would use instead of the matrix', async () => {
    expect(isSrgbProfile(renameTag(await cameraProfile(), 'tech', 'A2B0'))).toBe(false);
  });

  it('refuses damaged profiles: wrong signature, cut short, tag beyond the end', async () => {
    const icc = await cameraProfile();
    const unsigned = Buffer.from(icc);
    unsigned.write('xxxx', 36, 'latin1');
    expect(isSrgbProfile(unsigned)).toBe(false);
    expect(isSrgbProfile(icc.subarray(0, 600))).toBe(false);
    const beyond = Buffer.from(icc);
    beyond.writeUInt32BE(icc.length + 10, 132 + 4);
    expect(isSrgbProfile(beyond)).toBe(false);
  });
});

describe('the decode with an embedded profile', () => {
  it('skips the sRGB transform and gets the same pixels the transform gives', async () => {
    const header = await inspect(OLYMPUS, MAX_PIXELS);
    expect(header.srgbProfile).toBe(true);
    const skipped = await decodeOnce(OLYMPUS, MAX_PIXELS, header);
    const converted = await decodeOnce(OLYMPUS, MAX_PIXELS, { srgbProfile: false });
    expect([skipped.width, skipped.height]).toEqual([converted.width, converted.height]);
    let worst = 0;
    for (let i = 0; i < skipped.data.length; i++) worst = Math.max(worst, Math.abs((skipped.data[i] as number) - (converted.data[i] as number)));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('still converts a Display P3 photo to sRGB', async () => {
    const file = await taggedJpeg('p3');
    const header = await inspect(file, MAX_PIXELS);
    expect(header.srgbProfile).toBe(false);
    const out = await renderVariants({ path: file }, ['original'], { maxImagePixels: MAX_PIXELS, jpegQuality: 95 });
    const asTagged = await sharp(file, { ignoreIcc: true }).raw().toBuffer();
    const rendered = await sharp(out.variants.original.data).raw().toBuffer();
    // P3's red is outside sRGB: converted, the red channel saturates and green/blue move by far more than JPEG noise.
    const centre = (32 * 24 + 24) * 3;
    const moved = [0, 1, 2].map((c) => Math.abs((rendered[centre + c] as number) - (asTagged[centre + c] as number)));
    expect(Math.max(...moved)).toBeGreaterThan(10);
  });

  it('writes no profile into what it renders', async () => {
    const out = await renderVariants({ path: OLYMPUS }, ['thumb'], { maxImagePixels: MAX_PIXELS, jpegQuality: 85 });
    expect((await sharp(out.variants.thumb.data).metadata()).icc).toBeUndefined();
  });
});
