/**
 * Child process for bench/variants.ts: renders the four gallery sizes of the
 * given photos with Kiln's engine exactly as the server does (renderVariants,
 * all uploads in flight at once, the process-wide decode limiter deciding how
 * many decode together) and prints one JSON line of timings.
 *
 * Plain JavaScript over the built engine in dist/, as `npm start` runs it:
 * under the tsx loader the process would carry ~28 MB that the server does
 * not (bench/variants.ts builds dist/ first when it is stale).
 *
 *   node bench/lib/kiln-variants-worker.mjs <rounds> <concurrent:0|1> <photo>...
 *
 * concurrent=1: every render is started at once (throughput, the server under
 * load); concurrent=0: one after another (latency of one photo).
 */
import '../../dist/src/threadpool.js';
import { loadConfig } from '../../dist/src/config.js';
import { renderVariants, SIZE_NAMES } from '../../dist/src/images/variants.js';

const [roundsArg, concurrentArg, ...photos] = process.argv.slice(2);
const rounds = Number(roundsArg);
const config = loadConfig({});
const opts = { maxImagePixels: config.maxImagePixels, jpegQuality: config.jpegQuality };

/** @param {string} file */
async function timed(file) {
  const started = performance.now();
  const out = await renderVariants({ path: file }, SIZE_NAMES, opts);
  const bytes = Object.fromEntries(Object.entries(out.variants).map(([k, v]) => [k, v.bytes]));
  return { ms: performance.now() - started, bytes };
}

// Warm-up outside the clock: loads libvips and its codecs once, as a running server has.
await timed(photos[0]);

const jobs = Array.from({ length: rounds }, () => photos).flat();
const started = performance.now();
let results;
if (concurrentArg === '1') {
  results = await Promise.all(jobs.map((f) => timed(f)));
} else {
  results = [];
  for (const f of jobs) results.push(await timed(f));
}
const seconds = (performance.now() - started) / 1000;
process.stdout.write(
  JSON.stringify({
    photos: jobs.length,
    seconds,
    latenciesMs: results.map((r) => r.ms),
    bytes: results.slice(0, photos.length).map((r) => r.bytes),
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  }) + '\n',
);
