/**
 * Prompt release of decoded pixels. A decoded photo is one 40-60 MB Buffer
 * that sharp hands to JavaScript; V8 only sees it as "external memory" and
 * collects it lazily, so on a busy server several dead pixel buffers pile up
 * before the next full GC (measured: ~550 MB peak RSS for the corpus instead
 * of ~260 MB, see docs/performance.md). So a render that drops a large
 * photo's pixels has them collected right after it ends. Smaller photos are left to
 * V8, which starts a collection by itself after every ~64 MB of new external
 * memory: forcing one every couple of 4 MP uploads cost 15% of the upload
 * rate at 4 in parallel (12.3 against 14.4/s) for no lower peak.
 *
 * The same lag holds for the chunks an upload arrives in: each is a 64 KB
 * Buffer from the socket that is garbage once written to the staged file, but
 * its memory is back only after a young collection, which V8 puts off while
 * its own heap has room. With 20 uploads streaming in, tens of MB of dead
 * chunks sat in the allocator's heap between two (memory bench peaks 283-304
 * MB); asking for a young collection once 8 MiB were staged with none since
 * brought them to 278-288 MB (docs/performance.md, ninth round). Each took
 * 0.3 ms (median) in a probe staging 20 such uploads.
 */
import { constants as perf, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';

/** V8's `gc`: a full collection, or a young one with `{ type: 'minor' }`. */
type Collect = (options?: { type: 'major' | 'minor' }) => void;

/** Pixel bytes one render drops at or above which it collects: a photo of about 10 MP or more. */
const LARGE_RENDER_BYTES = 32 * 1024 * 1024;

let collect: Collect | null | undefined;

/**
 * `globalThis.gc` when node runs with --expose-gc; otherwise the documented
 * way to reach it at run time (the flag only makes the function available, it
 * changes nothing else about the collector). null when neither works.
 */
function collector(): Collect | null {
  if (collect !== undefined) return collect;
  const exposed = (globalThis as { gc?: Collect }).gc;
  if (typeof exposed === 'function') return (collect = exposed);
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn: unknown = vm.runInNewContext('gc');
    collect = typeof fn === 'function' ? (fn as Collect) : null;
  } catch {
    // Some embedders refuse run-time flags; the process then relies on V8's own timing.
    collect = null;
  }
  return collect;
}

/**
 * One full collection now, for a process that has just finished starting:
 * compiling the module graph leaves ~30 MB of garbage in V8's heap that
 * nothing else would collect while the server idles (measured: idle RSS
 * 129 -> ~100 MB).
 */
export function collectStartupGarbage(): void {
  collector()?.();
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Called by a render once its pixel buffers are unreachable. For a large
 * photo it collects until their memory is back: two full collections a turn
 * of the event loop apart, because a Buffer sharp made is only freed by the
 * second collection after it died (the first runs its weak callback;
 * measured: RSS back down only after gc, turn, gc, turn). Always, not only
 * when memory is already high: waiting for a high-water mark let two or three
 * dead photos pile up on top of it (variants bench: 330-360 MB peaks against
 * 280-330 MB).
 */
export async function pixelsDropped(bytes: number): Promise<void> {
  if (bytes < LARGE_RENDER_BYTES) return;
  const gc = collector();
  if (!gc) return;
  await nextTurn();
  gc();
  await nextTurn();
  gc();
  await nextTurn();
}

/** The most bytes staged before a young collection is asked for, when V8 has run none of its own since (noteStaged). */
export const STAGED_BYTES_PER_COLLECTION = 8 * 1024 * 1024;

let stagedSinceYoungCollection = 0;
let youngCollectionPending = false;
let watchingYoungCollections = false;

/** Any young collection, V8's own or asked for, takes the chunks staged before it: the count starts again. */
function watchYoungCollections(): void {
  if (watchingYoungCollections) return;
  watchingYoungCollections = true;
  new PerformanceObserver((list) => {
    // A 'gc' entry's detail says which collection it was.
    if (list.getEntries().some((e) => (e as unknown as { detail: { kind: number } }).detail.kind === perf.NODE_PERFORMANCE_GC_MINOR)) {
      stagedSinceYoungCollection = 0;
    }
  }).observe({ entryTypes: ['gc'] });
}

/**
 * Called by upload staging for every chunk handed to the file. Once
 * STAGED_BYTES_PER_COLLECTION bytes, process-wide, were staged with no young
 * collection since, it asks for one on the next turn of the event loop (never
 * more than one waiting), so the chunks already written give their memory
 * back. Where V8 collects often by itself (renders' pixel Buffers set it
 * off), this asks for nothing.
 */
export function noteStaged(bytes: number): void {
  watchYoungCollections();
  stagedSinceYoungCollection += bytes;
  if (stagedSinceYoungCollection < STAGED_BYTES_PER_COLLECTION || youngCollectionPending) return;
  const gc = collector();
  if (!gc) return;
  youngCollectionPending = true;
  setImmediate(() => {
    youngCollectionPending = false;
    stagedSinceYoungCollection = 0;
    gc({ type: 'minor' });
  });
}
