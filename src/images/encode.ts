/**
 * The pixel steps of a render, each one sharp call on libuv's pool: encode
 * raw pixels as a JPEG, reduce them to fit a box (and encode in the same
 * pipeline), crop a centre square, and turn them as the EXIF orientation
 * says. The renderer (variants.ts) decides which step makes which size from
 * which pixels; the coding and resampling choices live here.
 */
import { createHash } from 'node:crypto';
import sharp, { type JpegOptions, type Sharp, type SharpOptions } from 'sharp';
import type { Pixels } from './decode.js';
import type { RenderedVariant } from './variants.js';

/**
 * Fast baseline JPEG. Huffman optimisation costs a second pass over the
 * whole coefficient buffer and pays little at quality 85: measured on the
 * corpus (bench/coding.bench.ts), medium comes out 1.6% smaller for 2.7x its
 * encode time, thumb 3.1% smaller for +0.5 ms, and a 20 MP original needs
 * ~60 MB more to do it (docs/performance.md). So only the small sizes, which are
 * served most often and cost nothing to optimise, get it. Trellis
 * quantisation and scan optimisation (mozjpeg's slow paths) stay off; 4:2:0
 * chroma as every camera does.
 */
/** Thumb (at most 400x400) and game; not medium. */
const OPTIMISED_CODING_MAX_PIXELS = 250_000;

function jpegOptions(quality: number, pixels: number): JpegOptions {
  return {
    quality,
    progressive: false,
    chromaSubsampling: '4:2:0',
    optimiseCoding: pixels <= OPTIMISED_CODING_MAX_PIXELS,
    trellisQuantisation: false,
    overshootDeringing: false,
    optimiseScans: false,
  };
}

/**
 * Lanczos with two lobes rather than sharp's default three: a reduction
 * costs in proportion to the kernel's width, and medium from a 20 MP photo is
 * the largest step after the decode and the full-size encode (56 -> 42 ms on
 * one core for the corpus's 6028x3391 photo). The pictures differ from
 * three lobes' by 43-56 dB PSNR over the corpus (medium and thumb), against
 * 33-41 dB for the quality-85 JPEG encode that follows: a tenth of the error
 * the encode adds, or less. Variants bench: 13% more photos/s at the same
 * budget. docs/performance.md, ninth round.
 */
const RESIZE_KERNEL = 'lanczos2';

function rawInput(p: Pixels): SharpOptions {
  return { raw: { width: p.width, height: p.height, channels: 3 } };
}

/**
 * The steps that show pixels stored under EXIF `orientation` (1-8) as they are
 * meant to be seen. sharp mirrors before it rotates, whatever the order of
 * the calls; test/images/variants.test.ts checks all eight against libvips'
 * own autoOrient, pixel for pixel.
 */
function orient(image: Sharp, orientation: number): Sharp {
  switch (orientation) {
    case 2:
      return image.flop();
    case 3:
      return image.rotate(180);
    case 4:
      return image.flip();
    case 5:
      return image.flop().rotate(270);
    case 6:
      return image.rotate(90);
    case 7:
      return image.flop().rotate(90);
    case 8:
      return image.rotate(270);
    default:
      return image;
  }
}

/** Orientations 5-8 turn the picture a quarter: its width is the stored height. */
function turnsAQuarter(orientation: number): boolean {
  return orientation >= 5;
}

/** Width and height of `p` as shown under `orientation`. */
export function shown(p: Pixels, orientation: number): { width: number; height: number } {
  return turnsAQuarter(orientation) ? { width: p.height, height: p.width } : { width: p.width, height: p.height };
}

export async function encode(p: Pixels, quality: number, orientation: number): Promise<RenderedVariant> {
  const data = await orient(sharp(p.data, rawInput(p)), orientation).jpeg(jpegOptions(quality, p.width * p.height)).toBuffer();
  return { data, ...shown(p, orientation), bytes: data.length, etag: createHash('sha256').update(data).digest('hex') };
}

/** `p` turned as `orientation` says, for a caller that measures the picture as shown. */
export async function orientPixels(p: Pixels, orientation: number): Promise<Pixels> {
  if (orientation === 1) return p;
  const { data, info } = await orient(sharp(p.data, rawInput(p)), orientation).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Pixels of `p` reduced to fit inside max x max, as libvips rounds them. */
function fitPixels(p: Pixels, max: number): number {
  const scale = Math.min(max / p.width, max / p.height, 1);
  return Math.max(1, Math.round(p.width * scale)) * Math.max(1, Math.round(p.height * scale));
}

/** Reduced to fit and encoded in one pipeline: the reduced pixels are never written out whole. */
export async function encodeResized(p: Pixels, max: number, quality: number, orientation: number): Promise<RenderedVariant> {
  const { data, info } = await orient(sharp(p.data, rawInput(p)).resize(max, max, { fit: 'inside', withoutEnlargement: true, kernel: RESIZE_KERNEL }), orientation)
    .jpeg(jpegOptions(quality, fitPixels(p, max)))
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, bytes: data.length, etag: createHash('sha256').update(data).digest('hex') };
}

export async function resizeToFit(p: Pixels, max: number): Promise<Pixels> {
  const { data, info } = await sharp(p.data, rawInput(p))
    .resize(max, max, { fit: 'inside', withoutEnlargement: true, kernel: RESIZE_KERNEL })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

export async function cropSquare(p: Pixels, side: number): Promise<Pixels> {
  const { data, info } = await sharp(p.data, rawInput(p))
    .resize(side, side, { fit: 'cover', position: 'centre', kernel: RESIZE_KERNEL })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}
