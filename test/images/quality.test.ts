/**
 * Photo quality checks (spec: custom orders, "Photos are checked on upload")
 * on real photos from test/fixtures. Degraded copies (blurred, resized,
 * re-encoded, rotated) are made here with sharp so each case shows the one
 * change it is about.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  assessPixels,
  assessQuality,
  BLUR_THRESHOLD,
  DUPLICATE_MAX_DISTANCE,
  findDuplicate,
  hammingDistance,
  laplacianVariance,
  MIN_SHORT_SIDE,
  WORKING_SIZE,
} from '../../src/images/quality.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');
const fixture = (name: string): string => path.join(FIXTURES, name);
const ROCKET = fixture('rocket_small_640x427.jpg');
const PATH_PHOTO = fixture('path_2560x1600_olympus_exif.jpg');
const CAT = fixture('chelsea_cat_small_451x300.png');

/** Blur sigma in the photo's own pixels that equals `sigma` at the working size. */
async function blurredCopy(file: string, workingSigma: number): Promise<Buffer> {
  const { width = 0, height = 0 } = await sharp(file).metadata();
  const sigma = (workingSigma * Math.max(width, height)) / WORKING_SIZE;
  return sharp(file).blur(sigma).jpeg({ quality: 90 }).toBuffer();
}

describe('blur', () => {
  it.each([
    ['rocket', ROCKET],
    ['path', PATH_PHOTO],
  ])('a sharp photo (%s) is not blurry, the same photo blurred is', async (_name, file) => {
    const sharpPhoto = await assessQuality(file);
    expect(sharpPhoto.blurry).toBe(false);
    expect(sharpPhoto.blur_score).toBeGreaterThan(BLUR_THRESHOLD);

    const blurred = await assessQuality(await blurredCopy(file, 3));
    expect(blurred.blurry).toBe(true);
    expect(blurred.blur_score).toBeLessThan(BLUR_THRESHOLD);
  });

  it('keeps the sign of the Laplacian (an 8-bit result would clamp the negative side to 0)', async () => {
    // A vertical step 0 -> 100: each interior row holds one +100, one -100 and six 0,
    // so the variance is 2 * 100^2 / 8 = 2500 (with negatives clamped it would be 1094).
    const width = 10;
    const height = 5;
    const data = Buffer.alloc(width * height);
    for (let y = 0; y < height; y++) data.fill(100, y * width + 5, (y + 1) * width);
    expect(await laplacianVariance({ data, width, height })).toBeCloseTo(2500, 6);
  });

  it('a slight blur lowers the score a lot, so the score measures sharpness', async () => {
    const sharpPhoto = await assessQuality(ROCKET);
    const soft = await assessQuality(await blurredCopy(ROCKET, 1));
    expect(soft.blur_score).toBeLessThan(sharpPhoto.blur_score / 4);
  });

  it('does not depend on the upload resolution: a half-size copy scores about the same', async () => {
    const full = await assessQuality(PATH_PHOTO);
    const half = await assessQuality(await sharp(PATH_PHOTO).resize(1280).jpeg({ quality: 90 }).toBuffer());
    expect(half.blur_score / full.blur_score).toBeGreaterThan(0.75);
    expect(half.blur_score / full.blur_score).toBeLessThan(1.33);
  });

  it('takes the threshold from the options', async () => {
    const q = await assessQuality(ROCKET, { blurThreshold: 1e6 });
    expect(q.blurry).toBe(true);
  });
});

describe('size', () => {
  it('is too small under 800 px on the short side', async () => {
    const q = await assessQuality(ROCKET);
    expect([q.width, q.height, q.too_small]).toEqual([640, 427, true]);
  });

  it('is not too small at 2560x1600, and reads a file path or a Buffer alike', async () => {
    const q = await assessQuality(PATH_PHOTO);
    expect([q.width, q.height, q.too_small]).toEqual([2560, 1600, false]);
    const fromBuffer = await assessQuality(await sharp(PATH_PHOTO).toBuffer());
    expect(fromBuffer.width).toBe(2560);
  });

  it('counts the short side, exactly at the limit', async () => {
    // 1200x800 wide and 800x1200 tall are both fine; 799 is not.
    const wide = await sharp(PATH_PHOTO).resize(1200, MIN_SHORT_SIDE, { fit: 'fill' }).jpeg().toBuffer();
    const tall = await sharp(PATH_PHOTO).resize(MIN_SHORT_SIDE - 1, 1200, { fit: 'fill' }).jpeg().toBuffer();
    expect((await assessQuality(wide)).too_small).toBe(false);
    expect((await assessQuality(tall)).too_small).toBe(true);
  });
});

describe('perceptual hash and duplicates', () => {
  it('is 64 bits of hex', async () => {
    expect((await assessQuality(ROCKET)).phash).toMatch(/^[0-9a-f]{16}$/);
  });

  it('finds a 50% resized copy and a quality-60 re-encoded copy, not a different photo', async () => {
    const original = await assessQuality(ROCKET);
    const resized = await assessQuality(await sharp(ROCKET).resize(320).jpeg({ quality: 90 }).toBuffer());
    const reencoded = await assessQuality(await sharp(ROCKET).jpeg({ quality: 60 }).toBuffer());
    const cat = await assessQuality(CAT);
    const pathPhoto = await assessQuality(PATH_PHOTO);

    expect(hammingDistance(original.phash, resized.phash)).toBeLessThanOrEqual(DUPLICATE_MAX_DISTANCE);
    expect(hammingDistance(original.phash, reencoded.phash)).toBeLessThanOrEqual(DUPLICATE_MAX_DISTANCE);
    expect(hammingDistance(original.phash, cat.phash)).toBeGreaterThan(DUPLICATE_MAX_DISTANCE);
    expect(hammingDistance(original.phash, pathPhoto.phash)).toBeGreaterThan(DUPLICATE_MAX_DISTANCE);

    const earlier = [
      { file_id: 'cat', phash: cat.phash },
      { file_id: 'no-hash', phash: null },
      { file_id: 'rocket', phash: original.phash },
      { file_id: 'rocket-again', phash: resized.phash },
    ];
    expect(findDuplicate(reencoded.phash, earlier)).toBe('rocket');
    expect(findDuplicate(pathPhoto.phash, earlier)).toBeNull();
    expect(findDuplicate(original.phash, [])).toBeNull();
  });

  it('counts differing bits and refuses malformed hashes', () => {
    expect(hammingDistance('0000000000000000', 'ffffffffffffffff')).toBe(64);
    expect(hammingDistance('00000000000000f0', '0000000000000010')).toBe(3);
    expect(hammingDistance('ABCDEF0123456789', 'abcdef0123456789')).toBe(0);
    expect(() => hammingDistance('abc', '0000000000000000')).toThrow(RangeError);
    expect(() => findDuplicate('not-a-hash-at-al', [{ file_id: 'x', phash: '0000000000000000' }])).toThrow(RangeError);
  });

  it('respects maxDistance', () => {
    const earlier = [{ file_id: 'a', phash: '000000000000000f' }];
    expect(findDuplicate('0000000000000000', earlier, 3)).toBeNull();
    expect(findDuplicate('0000000000000000', earlier, 4)).toBe('a');
  });
});

describe('orientation', () => {
  it('measures the photo as displayed, after its EXIF orientation', async () => {
    // Pixels stored turned a quarter left, tagged "rotate 90° clockwise to display".
    const rotated = await sharp(ROCKET).rotate(270).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toBuffer();
    expect((await sharp(rotated).metadata()).width).toBe(427);
    const original = await assessQuality(ROCKET);
    const q = await assessQuality(rotated);
    expect([q.width, q.height]).toEqual([640, 427]);
    expect(hammingDistance(q.phash, original.phash)).toBeLessThanOrEqual(2);
  });

  // test/fixtures holds some of the corpus orient_*.jpg (one photo stored under
  // EXIF orientations 1-8, all displayed as 1200x1802); use whichever are here.
  const orientFiles = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => fixture(`orient_${n}.jpg`)).filter((f) => existsSync(f));
  it.skipIf(orientFiles.length < 2)('gives the same answer for the orient_*.jpg fixtures', async () => {
    const results = await Promise.all(orientFiles.map((f) => assessQuality(f)));
    const first = results[0];
    for (const q of results) {
      expect([q.width, q.height, q.too_small]).toEqual([1200, 1802, false]);
      expect(hammingDistance(q.phash, first?.phash ?? '')).toBeLessThanOrEqual(2);
      expect(Math.abs(q.blur_score - (first?.blur_score ?? 0))).toBeLessThan(5);
    }
  });
});

describe('formats', () => {
  it('handles a PNG with alpha and a CMYK JPEG of the same photo', async () => {
    const original = await assessQuality(ROCKET);
    const withAlpha = await sharp(ROCKET).ensureAlpha(0.6).png().toBuffer();
    const cmyk = await sharp(ROCKET).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    expect((await sharp(withAlpha).metadata()).channels).toBe(4);
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');

    for (const copy of [withAlpha, cmyk]) {
      const q = await assessQuality(copy);
      expect([q.width, q.height, q.blurry]).toEqual([640, 427, false]);
      expect(hammingDistance(q.phash, original.phash)).toBeLessThanOrEqual(DUPLICATE_MAX_DISTANCE);
    }
  });

  // Small derived copies of corpus photos, present in test/fixtures.
  const formatFixtures: Array<[string, number, number]> = [
    ['dogs_rgba_200x300.png', 200, 300], // RGBA
    ['picos_cmyk_400x300.jpg', 400, 300], // CMYK JPEG
    ['life_rgb16_300x200.png', 300, 200], // 16 bits per channel
  ];
  it.skipIf(!formatFixtures.every(([f]) => existsSync(fixture(f))))(
    'handles the RGBA, CMYK and 16-bit fixtures, which are three different photos',
    async () => {
      const results = await Promise.all(formatFixtures.map(([f]) => assessQuality(fixture(f))));
      results.forEach((q, i) => {
        const [, width, height] = formatFixtures[i] ?? ['', 0, 0];
        expect([q.width, q.height, q.too_small]).toEqual([width, height, true]);
        expect(q.phash).toMatch(/^[0-9a-f]{16}$/);
        expect(q.blur_score).toBeGreaterThan(0);
      });
      const [dogs, picos, life] = results.map((q) => q.phash);
      expect(hammingDistance(dogs ?? '', picos ?? '')).toBeGreaterThan(DUPLICATE_MAX_DISTANCE);
      expect(hammingDistance(picos ?? '', life ?? '')).toBeGreaterThan(DUPLICATE_MAX_DISTANCE);
      expect(hammingDistance(dogs ?? '', life ?? '')).toBeGreaterThan(DUPLICATE_MAX_DISTANCE);
    },
  );
});

describe('assessPixels (pixels the render already made)', () => {
  it('agrees with assessQuality on the same photo, and tells a blurred copy apart', async () => {
    const raw = async (input: string | Buffer) => {
      const { data, info } = await sharp(input).autoOrient().removeAlpha().raw().toBuffer({ resolveWithObject: true });
      return { data, width: info.width, height: info.height, channels: 3 as const };
    };
    const fromFile = await assessQuality(PATH_PHOTO);
    const fromPixels = await assessPixels(await raw(PATH_PHOTO));
    expect(fromPixels.blurry).toBe(false);
    expect(fromPixels.blur_score / fromFile.blur_score).toBeGreaterThan(0.8);
    expect(fromPixels.blur_score / fromFile.blur_score).toBeLessThan(1.25);
    expect(hammingDistance(fromPixels.phash, fromFile.phash)).toBeLessThanOrEqual(2);
    const blurred = await sharp(PATH_PHOTO).blur(8).jpeg().toBuffer();
    expect((await assessPixels(await raw(blurred))).blurry).toBe(true);
  });
});
