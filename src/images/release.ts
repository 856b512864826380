/**
 * Prompt release of decoded pixels. A decoded photo is one 40-60 MB Buffer
 * that sharp hands to JavaScript; V8 only sees it as "external memory" and
 * collects it lazily, so on a busy server several dead pixel buffers pile up
 * before the next full GC (measured: ~550 MB peak RSS for the corpus instead
 * of ~260 MB, see docs/performance.md). We count the pixel bytes each render
 * drops and ask V8 for a collection once that reaches a threshold: one GC per
 * one or two large photos, a few ms each on a small server heap.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

type Collect = () => void;

/** Dropped pixel bytes that trigger a collection. */
const THRESHOLD_BYTES = 32 * 1024 * 1024;

let collect: Collect | null | undefined;
let dropped = 0;

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

/** Notes that `bytes` of pixel buffers just became garbage; collects when enough has piled up and memory is high. */
export function pixelsDropped(bytes: number): void {
  dropped += bytes;
  if (dropped < THRESHOLD_BYTES) return;
  if (process.memoryUsage.rss() < RSS_HIGH_WATER_BYTES) return;
  dropped = 0;
  const gc = collector();
  // Deferred: the caller's frames still reference the pixels until it returns.
  if (gc) setImmediate(gc);
}
