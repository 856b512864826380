/**
 * The variant table and the renderer. SIZES is the one place a size is
 * defined (name -> rule): adding a size is adding one line. renderVariants
 * decodes the upload once and derives every size from pixels already in
 * memory, each from the smallest stage kept so far that is still big enough:
 * medium and thumb from the full image (medium resized and encoded in one
 * pipeline, never written out whole), game from thumb's pixels. No size pays
 * for a second decode. Every stage keeps the pixels
 * as stored; each output is turned as the EXIF orientation says while it is
 * encoded, so a rotated photo costs no second full-size copy. The sharp
 * calls themselves (coding, resampling, turning) are in encode.ts.
 */
import os from 'node:os';
import { configureSharp, decodeOnce, inspect, type Inspected, type Pixels } from './decode.js';
import { cropSquare, encode, encodeResized, orientPixels, resizeToFit, shown } from './encode.js';
import { DecodeLimiter, type Lease } from './limit.js';
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
  /** The raw pixels of `RenderOptions.keepPixels` as shown (EXIF orientation applied), when asked for. */
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
 * 240 MiB lets two typical 12-20 MP photos decode together. While a 17 MP
 * progressive 4:4:4 JPEG decodes (174 MiB, 64 MiB after) it keeps company
 * only with a photo already past its own decode: an 18 MP baseline one
 * (67 MiB) starting beside it took the variants bench to 290-315 MB. At
 * 248 MiB that pair is let in (peaks 247-297 MB, 2-8% more photos/s than at
 * 240, whose peaks were 244-276 MB). docs/performance.md, eighth and ninth rounds.
 */
const DECODE_BUDGET_BYTES = 240 * 1024 * 1024;
/**
 * Images up to this many pixels (a 4K frame) take half a core in the limiter:
 * two of them render side by side on one (limit.ts says why). Their pixels
 * are at most 25 MB each, so two hold what one 17 MP photo does.
 */
const HALF_CORE_PIXELS = 3840 * 2160;
const limiter = new DecodeLimiter(os.availableParallelism(), DECODE_BUDGET_BYTES);

export function configureImageEngine(opts: { concurrency?: number; memoryBudgetBytes?: number }): void {
  limiter.configure(opts.concurrency ?? os.availableParallelism(), opts.memoryBudgetBytes ?? DECODE_BUDGET_BYTES);
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
 * enough (a small upload), the full image is the right source. Every rule is
 * a square box or a square, so it holds for the stored pixels exactly as for
 * the turned ones.
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

/** An output's pixels and the EXIF orientation still to apply to them. */
interface Unturned {
  pixels: Pixels;
  orientation: number;
}

/**
 * Which reduced sizes are kept as pixels: the one a crop is made from (the
 * smallest reduction before it) and the one the caller asked for. Every other
 * reduction is resized and encoded in one pipeline straight from the source:
 * writing a medium's pixels out whole and reading them back cost more than
 * the box shrink that makes a thumb from the full image (a 4 MP render 8-10%
 * faster, 14 large photos 3-8%; docs/performance.md, twelfth round).
 */
function keptSizes(order: readonly SizeName[], keep: SizeName | undefined): Set<SizeName> {
  const kept = new Set<SizeName>(keep ? [keep] : []);
  for (let i = 1; i < order.length; i++) {
    const name = order[i] as SizeName;
    const before = order[i - 1] as SizeName;
    if (SIZES[name].kind === 'square' && SIZES[before].kind === 'fit') kept.add(before);
  }
  return kept;
}

export async function renderFromPixels<S extends SizeName>(
  sizes: readonly S[],
  quality: number,
  orientation: number,
  stages: Pixels[],
  pixelsOf: Partial<Record<SizeName, Unturned>>,
  keep: SizeName | undefined,
): Promise<Record<S, RenderedVariant>> {
  // Encodes run while the next, smaller size is being made: the full-size
  // JPEG encode overlaps the other sizes instead of waiting for them. Each is
  // watched from the start (`started`): one that fails while a later step is
  // still awaited must not be an unhandled rejection, which ends the process.
  const encodes: Array<Promise<[S, RenderedVariant]>> = [];
  const started = (encoding: Promise<[S, RenderedVariant]>): void => {
    encoding.catch(() => undefined);
    encodes.push(encoding);
  };
  const order = renderOrder(sizes);
  const kept = keptSizes(order, keep);
  try {
    await makeSizes();
  } catch (err) {
    // A step failed: the encodes already started finish (or fail) before the render gives its place back.
    await Promise.allSettled(encodes);
    throw err;
  }
  return Object.fromEntries(await settledAll(encodes)) as Record<S, RenderedVariant>;

  async function makeSizes(): Promise<void> {
    for (const name of order) {
      const rule: SizeRule = SIZES[name];
      const source = pickSource(stages, rule);
      let out: Unturned;
      if (rule.kind === 'square') {
        // A centre crop of an odd excess leaves the odd pixel on one side, so the (small) source is
        // turned first: on a mirrored photo the crop then falls exactly where it does on the photo as shown.
        out = { pixels: await cropSquare(await orientPixels(source, orientation), rule.side), orientation: 1 };
      } else if (rule.max === null || (source.width <= rule.max && source.height <= rule.max)) {
        out = { pixels: source, orientation };
      } else if (!kept.has(name)) {
        started(encodeResized(source, rule.max, quality, orientation).then((v) => [name, v]));
        continue;
      } else {
        const pixels = await resizeToFit(source, rule.max);
        stages.push(pixels);
        out = { pixels, orientation };
      }
      pixelsOf[name] = out;
      started(encode(out.pixels, quality, out.orientation).then((v) => [name, v]));
    }
  }
}

/**
 * Every result once all have settled, or the first failure once all have
 * settled: a failed render returns only when none of its work still runs
 * (its pixels' memory is back before the limiter lets the next one in).
 */
async function settledAll<T>(work: Array<Promise<T>>): Promise<T[]> {
  const settled = await Promise.allSettled(work);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
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
  // The render holds its decode cost until the decode is over, then only what its pixels need
  // (decodeAndRender). It keeps that place until the pixels' memory is back: a progressive JPEG
  // admitted a moment earlier fills tens of MB of coefficients at once, and on top of a finished
  // photo not yet collected that made the variants bench's highest peaks.
  const share = header.width * header.height <= HALF_CORE_PIXELS ? 0.5 : 1;
  return limiter.run(
    header.decodeCost,
    async (lease) => {
      const { image, pixelBytes } = await decodeAndRender(input.path, header, sizes, opts, lease);
      await pixelsDropped(pixelBytes);
      return image;
    },
    share,
  );
}

/** The one decode and every size from it; the pixel buffers die with this call's frame. */
async function decodeAndRender<S extends SizeName>(
  file: string,
  header: Inspected,
  sizes: readonly S[],
  opts: RenderOptions,
  lease: Lease,
): Promise<{ image: RenderedImage<S>; pixelBytes: number }> {
  const full = await decodeOnce(file, opts.maxImagePixels, header);
  // A progressive JPEG's coefficients are freed with its decoder: the next photo may start now.
  lease.shrinkTo(header.heldCost);
  const stages: Pixels[] = [full];
  const kept: Partial<Record<SizeName, Unturned>> = {};
  const variants = await renderFromPixels(sizes, opts.jpegQuality, header.orientation, stages, kept, opts.keepPixels);
  const keep = opts.keepPixels ? kept[opts.keepPixels] : undefined;
  const image = { ...shown(full, header.orientation), variants, ...(keep ? { pixels: await orientPixels(keep.pixels, keep.orientation) } : {}) };
  return { image, pixelBytes: stages.reduce((sum, p) => sum + p.data.length, 0) };
}

/** For tests and metrics: images decoding now, waiting, and the bytes they hold. */
export function decodeLoad(): { running: number; queued: number; usedBytes: number } {
  return limiter.stats;
}
