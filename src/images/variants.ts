/**
 * The variant table and the renderer. SIZES is the one place a size is
 * defined (name -> rule): adding a size is adding one line. renderVariants
 * decodes the upload once and derives every size from pixels already in
 * memory, each from the smallest earlier result still big enough (medium from
 * the full image, thumb from medium, game from thumb), so no size pays for a
 * second decode or a full-resolution resize.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import sharp, { type JpegOptions, type SharpOptions } from 'sharp';
import { configureSharp, decodeOnce, inspect, type Inspected, type Pixels } from './decode.js';
import { DecodeLimiter } from './limit.js';
import { pixelsDropped } from './release.js';
import type { StagedUpload } from './ingest.js';

/** `fit`: inside max x max, aspect kept, never enlarged (null: full size). `square`: centre crop, exactly side x side. */
export type SizeRule = { kind: 'fit'; max: number | null } | { kind: 'square'; side: number };

export const SIZES = {
  original: { kind: 'fit', max: null },
  medium: { kind: 'fit', max: 1600 },
  thumb: { kind: 'fit', max: 400 },
  game: { kind: 'square', side: 50 },
} as const satisfies Record<string, SizeRule>;

export type SizeName = keyof typeof SIZES;

export const SIZE_NAMES = Object.keys(SIZES) as SizeName[];

export function isSizeName(s: string): s is SizeName {
  return Object.hasOwn(SIZES, s);
}

export interface RenderedVariant {
  data: Buffer;
  width: number;
  height: number;
  bytes: number;
  /** Hex SHA-256 of data. */
  etag: string;
}

export interface RenderedImage<S extends SizeName = SizeName> {
  /** Of the original after EXIF orientation. */
  width: number;
  height: number;
  variants: Record<S, RenderedVariant>;
  /** The raw pixels of `RenderOptions.keepPixels`, when asked for. */
  pixels?: Pixels;
}

export interface RenderOptions {
  maxImagePixels: number;
  jpegQuality: number;
  /** Also hand back the raw pixels of this size, for a caller that measures them (quality checks) without decoding its JPEG again. */
  keepPixels?: SizeName;
}

/**
 * Process-wide on purpose: libvips' memory and the CPU cores are shared by
 * every request in the process, so one limiter must see all decodes.
 * 256 MB lets two typical 12-20 MP photos decode together, and a 17 MP
 * progressive JPEG (about 170 MB while decoding) beside a 20 MP baseline one;
 * at 192 MB the progressive one ran alone and left a core idle (4.2 against
 * 5.8 photos/s on the corpus, for ~25 MB more peak; docs/performance.md).
 */
const DECODE_BUDGET_BYTES = 256 * 1024 * 1024;
const limiter = new DecodeLimiter(os.availableParallelism(), DECODE_BUDGET_BYTES);

export function configureImageEngine(opts: { concurrency?: number; memoryBudgetBytes?: number }): void {
  limiter.configure(opts.concurrency ?? os.availableParallelism(), opts.memoryBudgetBytes ?? DECODE_BUDGET_BYTES);
}

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

function rawInput(p: Pixels): SharpOptions {
  return { raw: { width: p.width, height: p.height, channels: 3 } };
}

async function encode(p: Pixels, quality: number): Promise<RenderedVariant> {
  const data = await sharp(p.data, rawInput(p)).jpeg(jpegOptions(quality, p.width * p.height)).toBuffer();
  return { data, width: p.width, height: p.height, bytes: data.length, etag: createHash('sha256').update(data).digest('hex') };
}

async function resizeToFit(p: Pixels, max: number): Promise<Pixels> {
  const { data, info } = await sharp(p.data, rawInput(p))
    .resize(max, max, { fit: 'inside', withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

async function cropSquare(p: Pixels, side: number): Promise<Pixels> {
  const { data, info } = await sharp(p.data, rawInput(p))
    .resize(side, side, { fit: 'cover', position: 'centre' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Largest first, so every size can start from the result of a bigger one. */
function renderOrder<S extends SizeName>(sizes: readonly S[]): S[] {
  const area = (name: SizeName): number => {
    const rule: SizeRule = SIZES[name];
    if (rule.kind === 'square') return rule.side * rule.side;
    return rule.max === null ? Number.POSITIVE_INFINITY : rule.max * rule.max;
  };
  return [...new Set(sizes)].sort((a, b) => area(b) - area(a));
}

/**
 * The smallest stage that still holds every pixel the rule needs. Stages are
 * aspect-kept reductions of the full image, largest first; when none is big
 * enough (a small upload), the full image is the right source.
 */
function pickSource(stages: Pixels[], rule: SizeRule): Pixels {
  const full = stages[0] as Pixels;
  const need = (p: Pixels): boolean => {
    if (rule.kind === 'square') return Math.min(p.width, p.height) >= rule.side;
    const fullLong = Math.max(full.width, full.height);
    return Math.max(p.width, p.height) >= Math.min(rule.max ?? fullLong, fullLong);
  };
  for (let i = stages.length - 1; i > 0; i--) {
    const stage = stages[i] as Pixels;
    if (need(stage)) return stage;
  }
  return full;
}

async function renderFromPixels<S extends SizeName>(
  full: Pixels,
  sizes: readonly S[],
  quality: number,
  stages: Pixels[],
  pixelsOf: Partial<Record<SizeName, Pixels>>,
): Promise<Record<S, RenderedVariant>> {
  // Encodes run while the next, smaller stage is being resized: the full-size
  // JPEG encode overlaps the medium resize instead of waiting for it.
  const encodes: Array<Promise<[S, RenderedVariant]>> = [];
  for (const name of renderOrder(sizes)) {
    const rule: SizeRule = SIZES[name];
    const source = pickSource(stages, rule);
    let pixels: Pixels;
    if (rule.kind === 'square') {
      pixels = await cropSquare(source, rule.side);
    } else if (rule.max === null || (source.width <= rule.max && source.height <= rule.max)) {
      pixels = source;
    } else {
      pixels = await resizeToFit(source, rule.max);
      stages.push(pixels);
    }
    pixelsOf[name] = pixels;
    encodes.push(encode(pixels, quality).then((v) => [name, v]));
  }
  return Object.fromEntries(await Promise.all(encodes)) as Record<S, RenderedVariant>;
}

/**
 * Makes the requested sizes from a staged upload in one decode, off the event
 * loop (every step is a sharp call on libuv's pool) and under the process's
 * DecodeLimiter. Throws TooLarge('image_too_large') when the header declares
 * more than maxImagePixels, UnsupportedImage('corrupt_image') when the data
 * cannot be decoded completely.
 */
export async function renderVariants<S extends SizeName>(
  input: Pick<StagedUpload, 'path'>,
  sizes: readonly S[],
  opts: RenderOptions,
): Promise<RenderedImage<S>> {
  configureSharp();
  const header = await inspect(input.path, opts.maxImagePixels);
  const { image, pixelBytes } = await limiter.run(header.decodeCost, () => decodeAndRender(input.path, header, sizes, opts));
  // The pixels are unreachable now. Their memory comes back within a few turns of the event
  // loop while the next decode, already admitted, is still filling its own buffer.
  void pixelsDropped(pixelBytes);
  return image;
}

/** The one decode and every size from it; the pixel buffers die with this call's frame. */
async function decodeAndRender<S extends SizeName>(
  file: string,
  header: Inspected,
  sizes: readonly S[],
  opts: RenderOptions,
): Promise<{ image: RenderedImage<S>; pixelBytes: number }> {
  const full = await decodeOnce(file, opts.maxImagePixels, header);
  const stages: Pixels[] = [full];
  const kept: Partial<Record<SizeName, Pixels>> = {};
  const variants = await renderFromPixels(full, sizes, opts.jpegQuality, stages, kept);
  const image = { width: full.width, height: full.height, variants, ...(opts.keepPixels ? { pixels: kept[opts.keepPixels] } : {}) };
  return { image, pixelBytes: stages.reduce((sum, p) => sum + p.data.length, 0) };
}

/** For tests and metrics: images decoding now, waiting, and the bytes they hold. */
export function decodeLoad(): { running: number; queued: number; usedBytes: number } {
  return limiter.stats;
}
