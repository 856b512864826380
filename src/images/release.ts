/**
 * Prompt release of decoded pixels. A decoded photo is one 40-60 MB Buffer
 * that sharp hands to JavaScript; V8 only sees it as "external memory" and
 * collects it lazily, so on a busy server several dead pixel buffers pile up
 * before the next full GC (measured: ~550 MB peak RSS for the corpus instead
 * of ~260 MB, see docs/performance.md). So a render that drops a large
 * photo's pixels has them collected before it ends. Smaller photos are left to
 * V8, which starts a collection by itself after every ~64 MB of new external
 * memory: forcing one every couple of 4 MP uploads cost 15% of the upload
 * rate at 4 in parallel (12.3 against 14.4/s) for no lower peak.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

type Collect = () => void;

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
 * Below this resident size a forced collection is not worth its cost: a full
 * GC of the server's heap takes ~20 ms on the main thread, which at one
 * 4 MP upload at a time was a fifth of each upload's time
 * (docs/performance.md, "Upload path"); V8's own timing is enough there.
 */
const RSS_HIGH_WATER_BYTES = 224 * 1024 * 1024;

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
 * photo, when memory is high, it collects until their memory is back: two
 * full collections a turn of the event loop apart, because a Buffer sharp
 * made is only freed by the second collection after it died (the first runs
 * its weak callback; measured: RSS back down only after gc, turn, gc, turn).
 * The render holds its decode slot meanwhile (~10 ms), so the next decode
 * never starts on top of a dead photo.
 */
export async function pixelsDropped(bytes: number): Promise<void> {
  if (bytes < LARGE_RENDER_BYTES) return;
  if (process.memoryUsage.rss() < RSS_HIGH_WATER_BYTES) return;
  const gc = collector();
  if (!gc) return;
  await nextTurn();
  gc();
  await nextTurn();
  gc();
  await nextTurn();
}
