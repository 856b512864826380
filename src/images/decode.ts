/**
 * The single decode of an upload: header inspection (type, size, memory
 * estimate, EXIF orientation) and then one full decode to 8-bit sRGB pixels
 * as stored, flattened on white (the renderer turns each output as the EXIF
 * orientation says, variants.ts). Also owns sharp's process-wide settings and the mapping
 * of decoder failures to the contract's errors (413 image_too_large, 415
 * corrupt_image / unsupported_image).
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { TooLarge, UnsupportedImage } from '../errors.js';
import { isMissing } from '../platform/files.js';
import { isSrgbProfile } from './icc.js';

export interface Pixels {
  /** Interleaved 8-bit sRGB, 3 bytes per pixel, in the order of `width` x `height`. */
  data: Buffer;
  width: number;
  height: number;
}

export interface Inspected {
  /** As stored, before the EXIF orientation. */
  width: number;
  height: number;
  /** The EXIF orientation, 1-8 (1 when absent or not one of those). */
  orientation: number;
  /** Estimated peak bytes the decode holds; the DecodeLimiter budgets with it. */
  decodeCost: number;
  /**
   * What the render still holds once the decode is over: the 8-bit pixels and
   * the fixed share. A progressive JPEG's coefficients and a 16-bit image's
   * wide copy are gone by then.
   */
  heldCost: number;
  /** The embedded ICC profile is sRGB's own, so converting with it would change nothing (icc.ts). */
  srgbProfile: boolean;
}

/**
 * 'error' refuses truncated files and decoder errors (a cut-off JPEG must not
 * become a half-grey picture) yet tolerates the harmless warnings some cameras
 * trigger ("extraneous bytes before marker"), which 'warning' would refuse.
 */
const FAIL_ON = 'error' as const;

let sharpConfigured = false;

/**
 * sharp.cache(false): libvips' operation cache only helps when the same input
 * is processed again; every upload is new, so it would only hold memory.
 * sharp.concurrency(1): one libvips thread per image; the server gets its
 * parallelism from several images at once (DecodeLimiter slots = cores), which
 * measured faster per core and far smaller in memory than threads inside one image.
 */
export function configureSharp(): void {
  if (sharpConfigured) return;
  sharp.cache(false);
  sharp.concurrency(1);
  sharpConfigured = true;
}

/** The largest width or height libjpeg writes (JPEG_MAX_DIMENSION): a 70000x1 PNG passes MAX_IMAGE_PIXELS but has no JPEG original. */
export const JPEG_MAX_SIDE = 65_500;

function imageTooLarge(maxImagePixels: number): TooLarge {
  return new TooLarge(`The image has more than ${maxImagePixels} pixels, the most this server decodes.`, 'image_too_large');
}

/** Turns a decoder's error into the contract's answer; anything else is a bug and stays as it is. */
function asDecodeError(err: unknown, maxImagePixels: number): Error {
  const message = err instanceof Error ? err.message : String(err);
  if (/exceeds pixel limit/i.test(message)) return imageTooLarge(maxImagePixels);
  if (/heif.*(compression|codec|plugin|not supported|unsupported)/i.test(message)) {
    return new UnsupportedImage('This HEIC/HEIF image uses a codec this server cannot decode; send JPEG, PNG or WebP.', 'unsupported_image');
  }
  // A staged file that is gone is Kiln's failure, not the image's: it stays an internal error (500).
  // sharp says so in words, without an error code.
  if (isMissing(err) || /^Input file is missing/.test(message)) return err as Error;
  return new UnsupportedImage('The image is damaged or truncated and cannot be read.', 'corrupt_image');
}

/**
 * What a progressive decode holds for the whole image until its last scan:
 * one 16-bit coefficient per luma sample and per chroma sample, so 4:2:0
 * (chroma at a quarter of the pixels) needs half of 4:4:4, plus 15% measured
 * slack (corpus: 4.75 B/px over the result for 4:2:0, 6.9 for 4:4:4, both
 * with ~1 B/px of fixed decoder state). Unknown layouts count as 4:4:4.
 */
export function wholeImageBytesPerPixel(chromaSubsampling: string | undefined): number {
  const chromaShare: Record<string, number> = { '4:4:4': 1, '4:4:0': 0.5, '4:2:2': 0.5, '4:2:0': 0.25, '4:1:1': 0.25 };
  const samples = 1 + 2 * (chromaShare[chromaSubsampling ?? ''] ?? 1);
  return samples * 2 * 1.15;
}

/**
 * Reads only the header. A PNG declaring 30000x30000 in 100 bytes is refused
 * here, before a single pixel buffer exists.
 */
export async function inspect(file: string, maxImagePixels: number): Promise<Inspected> {
  let meta: Metadata;
  try {
    meta = await sharp(file, { failOn: FAIL_ON, limitInputPixels: maxImagePixels }).metadata();
  } catch (err) {
    throw asDecodeError(err, maxImagePixels);
  }
  const { width, height } = meta;
  if (!width || !height) throw new UnsupportedImage('The image has no size and cannot be read.', 'corrupt_image');
  const pixels = width * height;
  if (pixels > maxImagePixels) throw imageTooLarge(maxImagePixels);
  if (width > JPEG_MAX_SIDE || height > JPEG_MAX_SIDE) {
    throw new TooLarge(`The image is ${width}x${height} pixels; every size Kiln stores is a JPEG, which holds at most ${JPEG_MAX_SIDE} pixels a side.`, 'image_too_large');
  }
  // Measured on the corpus: the 8-bit RGB result (3 B/px) plus ~12 MB of decoder
  // state; a progressive JPEG or interlaced PNG also keeps the whole image's
  // coefficients (wholeImageBytesPerPixel). A rotated photo needs no second copy:
  // it is decoded as stored and each output turned as it is encoded.
  const heldCost = pixels * 3 + 16 * 1024 * 1024;
  const decodeOnlyPerPixel = (meta.isProgressive === true ? wholeImageBytesPerPixel(meta.chromaSubsampling) : 0) + (meta.depth === 'ushort' ? 6 : 0);
  const tagged = meta.orientation ?? 1;
  const orientation = Number.isInteger(tagged) && tagged >= 1 && tagged <= 8 ? tagged : 1;
  return { width, height, orientation, decodeCost: heldCost + pixels * decodeOnlyPerPixel, heldCost, srgbProfile: isSrgbProfile(meta.icc) };
}

/**
 * The one decode: alpha flattened on white, any colour space (CMYK, grey,
 * 16-bit, embedded ICC profiles) converted to 8-bit sRGB; an embedded profile
 * that is sRGB's own is not run, as it would change nothing. The pixels are
 * as stored: the EXIF orientation (Inspected.orientation) is the caller's to
 * apply. Turning a photo here would need the whole decoded image and a second
 * full-size copy to turn it into (libvips keeps both); the renderer turns
 * each output as it encodes it instead. The result carries no metadata at
 * all, so nothing encoded from it can leak EXIF, GPS or camera data.
 */
export async function decodeOnce(file: string, maxImagePixels: number, header: Pick<Inspected, 'srgbProfile'>): Promise<Pixels> {
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    // An sRGB profile is skipped rather than applied: the same pixels, without lcms's per-pixel cost.
    decoded = await sharp(file, { failOn: FAIL_ON, limitInputPixels: maxImagePixels, sequentialRead: true, ignoreIcc: header.srgbProfile })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw asDecodeError(err, maxImagePixels);
  }
  const { data, info } = decoded;
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return { data, width: info.width, height: info.height };
}
