/**
 * Photo quality checks run on upload (spec: custom orders, "Photos are checked
 * on upload"): too small, blurry, and a perceptual hash for the duplicate
 * check. These inform, never reject, so this module only measures; the
 * custom-orders service decides what to store and compares hashes with
 * findDuplicate().
 *
 * Cost: one decode straight to a greyscale working copy whose long side is
 * WORKING_SIZE (JPEG shrink-on-load makes a 20 MP photo cheap), then two tiny
 * sharp pipelines over that copy. All pixel work runs on libuv's pool inside
 * sharp; the JavaScript left is one pass over ~175k pixels and a 32x32 DCT.
 * Thresholds are calibrated by bench/quality-calibration.ts; see docs/quality.md.
 */
import sharp from 'sharp';
import { PHASH_INPUT_SIZE, phashFromThumbnail } from './phash.js';

export { DUPLICATE_MAX_DISTANCE, findDuplicate, hammingDistance, type HashedFile } from './phash.js';

/** What the upload check reports for one photo. */
export interface PhotoQuality {
  /** Width of the photo as displayed (after EXIF orientation). */
  width: number;
  /** Height of the photo as displayed (after EXIF orientation). */
  height: number;
  too_small: boolean;
  blurry: boolean;
  /** Variance of the Laplacian at WORKING_SIZE; higher is sharper. */
  blur_score: number;
  /** 64-bit DCT perceptual hash, 16 lowercase hex digits. */
  phash: string;
}

export interface QualityOptions {
  /** Short side (px) below which a photo is too small. Default MIN_SHORT_SIDE. */
  minShortSide?: number;
  /** blur_score below which a photo is blurry. Default BLUR_THRESHOLD. */
  blurThreshold?: number;
}

/** Spec: under 800 pixels on the short side is too small. */
export const MIN_SHORT_SIDE = 800;

/**
 * Long side (px) every photo is scaled to before measuring blur. Fixed, so the
 * score describes the picture and not the upload's resolution: the same photo
 * at 6000 px or 1500 px gives about the same score.
 */
export const WORKING_SIZE = 512;

/**
 * Variance of the Laplacian below which a photo is blurry. Calibrated on the
 * corpus (docs/quality.md): sharp photos score 116 and up, the same photos
 * blurred with sigma 3 at the working size score under 10; 30 sits near the
 * geometric middle, about 4x from each side.
 */
export const BLUR_THRESHOLD = 30;

/** A greyscale 8-bit raster, one byte per pixel. */
export interface GreyImage {
  data: Buffer;
  width: number;
  height: number;
}

/**
 * Measures one photo. `input` is anything sharp reads (a file path or a
 * Buffer); the caller has already sniffed and validated it, so a decode error
 * here is a genuine failure and propagates as sharp's error.
 */
export async function assessQuality(
  input: string | Buffer,
  opts: QualityOptions = {},
): Promise<PhotoQuality> {
  const minShortSide = opts.minShortSide ?? MIN_SHORT_SIDE;
  const blurThreshold = opts.blurThreshold ?? BLUR_THRESHOLD;

  const [meta, working] = await Promise.all([sharp(input).metadata(), workingCopy(input)]);
  // metadata() reports stored dimensions; autoOrient holds them as displayed
  // (swapped for EXIF orientations 5-8), which is what the customer sees.
  const { width, height } = meta.autoOrient;
  return { width, height, too_small: Math.min(width, height) < minShortSide, ...(await measure(working, blurThreshold)) };
}

export type PixelQuality = Pick<PhotoQuality, 'blurry' | 'blur_score' | 'phash'>;

/**
 * Blur and pHash of pixels already decoded (8-bit sRGB, 3 bytes per pixel,
 * oriented): the upload path hands over the pixels of a variant it made, so
 * the check costs no second decode. Same working copy, same thresholds.
 */
export async function assessPixels(pixels: GreyImage & { channels: 3 }, opts: QualityOptions = {}): Promise<PixelQuality> {
  const { data, info } = await sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: 3 } })
    .greyscale()
    .resize(WORKING_SIZE, WORKING_SIZE, { fit: 'inside' })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const working = { data: firstChannel(data, info.channels), width: info.width, height: info.height };
  return measure(working, opts.blurThreshold ?? BLUR_THRESHOLD);
}

async function measure(working: GreyImage, blurThreshold: number): Promise<PixelQuality> {
  const [blurScore, phash] = await Promise.all([laplacianVariance(working), phashOf(working)]);
  return { blurry: blurScore < blurThreshold, blur_score: Math.round(blurScore * 100) / 100, phash };
}

/**
 * Decodes `input` once into the normalised greyscale working copy: oriented,
 * alpha flattened onto white (transparent areas would otherwise read as black
 * and invent edges), long side exactly WORKING_SIZE (small photos are enlarged
 * so that every score is measured at the same scale).
 */
export async function workingCopy(input: string | Buffer): Promise<GreyImage> {
  const { data, info } = await sharp(input, { autoOrient: true })
    .flatten({ background: '#ffffff' })
    .greyscale()
    .resize(WORKING_SIZE, WORKING_SIZE, { fit: 'inside' })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  return { data: firstChannel(data, info.channels), width: info.width, height: info.height };
}

/**
 * Variance of the Laplacian (kernel 0 1 0 / 1 -4 1 / 0 1 0) of a greyscale
 * raster, computed in one pass in JavaScript: on the 512 px working copy
 * that is ~1 ms, where a libvips convolution read back as signed 16-bit cost
 * more in pipeline set-up than in arithmetic. The 1-pixel border is skipped:
 * it depends on how the edge would be padded.
 */
export async function laplacianVariance(grey: GreyImage): Promise<number> {
  const { width, height, data } = grey;
  if (width < 3 || height < 3) return 0;
  let n = 0;
  let sum = 0;
  let sumSq = 0;
  for (let y = 1; y < height - 1; y++) {
    const row = y * width;
    for (let x = 1; x < width - 1; x++) {
      const i = row + x;
      const v = (data[i - width] as number) + (data[i + width] as number) + (data[i - 1] as number) + (data[i + 1] as number) - 4 * (data[i] as number);
      sum += v;
      sumSq += v * v;
      n++;
    }
  }
  const mean = sum / n;
  return sumSq / n - mean * mean;
}

/** pHash of the working copy, squashed to 32x32 as the classic algorithm does. */
async function phashOf(grey: GreyImage): Promise<string> {
  const { width, height } = grey;
  const { data, info } = await sharp(grey.data, { raw: { width, height, channels: 1 } })
    .resize(PHASH_INPUT_SIZE, PHASH_INPUT_SIZE, { fit: 'fill' })
    .greyscale()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  return phashFromThumbnail(firstChannel(data, info.channels));
}

// Defensive: greyscale() should already give one band, but a libvips change
// that kept an extra band would otherwise silently skew every measurement.
function firstChannel(data: Buffer, channels: number): Buffer {
  if (channels === 1) return data;
  const out = Buffer.alloc(data.length / channels);
  for (let i = 0; i < out.length; i++) out[i] = data[i * channels] ?? 0;
  return out;
}
