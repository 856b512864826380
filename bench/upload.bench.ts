/**
 * The upload path end to end: POST /projects/{id}/images (multipart `file`)
 * of the 4 MP corpus photo against the built server in a child process
 * (SQLite, fs blobs, temp DATA_DIR), at concurrency 1 and 4 for a bounded
 * time each after a short warm-up: uploads/s, p50, p99 and the server's peak
 * RSS. The client sends a body framed once, in one write, over kept-alive
 * connections (bench/lib/upload-client.ts), so its own cost stays small.
 * Beside it, the "pure variant time": the same photo through the built
 * engine (stageUpload from a file stream + renderVariants of the four gallery
 * sizes), one at a time, in a child process of its own
 * (bench/lib/engine-child.mjs), while the server idles: the two never share
 * the CPU, and the load generator here never shares an event loop with
 * renders. HTTP and storage overhead at concurrency 1 =
 * (upload p50 - variant p50) / variant p50. At c=1 the engine and the
 * uploads alternate one by one (a render, an upload, a render, …), so that
 * the machine's drift, which moves both by 20% within seconds here, falls
 * on both alike; this runs for BENCH_ROUNDS rounds (default 3) and the
 * verdicts at c=1 are on the medians of the rounds. Each round starts a
 * server and an engine child of its own (each c=4 round a server): a
 * process keeps for its whole life how well its large blocks line up with
 * 2 MB pages, which put four identical servers' p50s 8 ms apart
 * (docs/performance.md, thirteenth round), so the rounds' median is taken
 * over three draws on each side rather than one. c=4 runs as many rounds,
 * each on a server of its own, for the same reason: its verdicts are on the
 * medians of the rounds as at c=1, and the p99 / p50 of all its uploads
 * pooled is printed beside them. Each c=1 turn also runs the
 * machine reference once (a fixed memory-bound job with nothing of Kiln in
 * it, bench/lib/engine-child.mjs): its p99 / p50 in the same rounds is what
 * the machine's memory alone does to a tail, printed beside the target's.
 * Figures, never pass/fail.
 *
 *   npm run build && node --import tsx bench/run.ts upload     (or `npm run bench -- upload`)
 *   BENCH_SECONDS=15 sets the time of each round, at c=1 and at c=4; BENCH_TAIL_SAMPLES=200
 *   the uploads a round at c=1 goes on for at least (p99 is nearest-rank: the third slowest of 200).
 *   BENCH_STORAGE=s3 stores the blobs in a bucket of the tests' local S3-protocol server
 *   (test/helpers/s3.ts, objects in memory, in a process of its own: bench/lib/s3-child.ts)
 *   instead of the disk: the cost of the S3 client itself, without a network's latency.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { corpusFiles } from './lib/corpus.js';
import { ensureBuilt, RssSampler, startBenchServer, type BenchServer } from './lib/kiln-server.js';
import { startS3Child } from './lib/s3-child.js';
import { startCommand } from '../test/helpers/start-command.js';
import { MultipartUpload } from './lib/upload-client.js';
import { fmt, percentile, table } from './lib/measure.js';
import { machineLine, verdict } from './lib/report.js';

/** The allocator settings and node flags `npm start` runs the server with; the engine child runs with them too. */
const START = startCommand();

const PHOTO = 'path_2560x1600_olympus_exif.jpg';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const STORAGE = process.env.BENCH_STORAGE === 's3' ? 's3' : 'fs';
/** Each round at c=1: renders, references and uploads alternating. */
const ROUND_SECONDS = SECONDS;
/**
 * A round at c=1 goes on past ROUND_SECONDS until it has this many uploads
 * (and as many renders): a nearest-rank p99 of fewer than 100 samples is
 * simply the slowest one, so one stall decided the round's tail. With 200
 * it is the third slowest. Never longer than TAIL_CAP_FACTOR x ROUND_SECONDS.
 */
const MIN_TAIL_SAMPLES = Math.max(1, Number(process.env.BENCH_TAIL_SAMPLES ?? 200));
const TAIL_CAP_FACTOR = 6;
const WARMUP_UPLOADS = 4;
/**
 * c=4 runs this long before it is counted. The server's warm-up is at c=1, and
 * four lanes that start in the same instant meet a closed loop's start: two
 * renders get the two cores, the other two wait a whole render, so the first
 * uploads of two lanes take about 1.7x the p50 and, as two of some 250
 * samples, were the p99 (docs/performance.md, sixteenth round). After a
 * second or two the lanes have spread out as they stay.
 */
const C4_WARMUP_SECONDS = 3;
const TARGET_RPS_C4 = 13;
const TARGET_P99_RATIO = 1.5;
const TARGET_OVERHEAD = 0.15;

interface Phase {
  concurrency: number;
  ok: number;
  failed: number;
  seconds: number;
  latenciesMs: number[];
  peakRssMb: number | null;
}

/** Renders the photo as an upload would, one at a time, in a child process (bench/lib/engine-child.mjs); latencies in ms. */
class Engine {
  private readonly tmpDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-variants-'));
  private readonly child: ChildProcess;
  private readonly ready: Promise<unknown>;

  constructor(photo: string) {
    this.child = fork(path.join(import.meta.dirname, 'lib', 'engine-child.mjs'), [photo, this.tmpDir], { execArgv: START.nodeArgs, env: { ...process.env, ...START.env } });
    this.ready = this.answer();
  }

  private answer(): Promise<{ times?: number[] }> {
    return new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('message', (m) => {
        this.child.off('error', reject); // one render per ask: listeners must not pile up
        resolve(m as { times?: number[] });
      });
    });
  }

  private async ask(message: { renders: number } | { references: number }): Promise<number[]> {
    await this.ready;
    const answered = this.answer();
    this.child.send(message);
    return (await answered).times ?? [];
  }

  /** n renders one after another; their times. */
  renders(n: number): Promise<number[]> {
    return this.ask({ renders: n });
  }

  /** n runs of the machine reference; their times. */
  references(n: number): Promise<number[]> {
    return this.ask({ references: n });
  }

  close(): void {
    this.child.kill();
    rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

/** The photo as a multipart upload to the bench project, framed once (bench/lib/upload-client.ts). */
function uploader(kiln: BenchServer, data: Buffer, connections: number): MultipartUpload {
  return new MultipartUpload(`${kiln.url}/projects/bench/images`, kiln.user.headers, { field: 'file', filename: PHOTO, type: 'image/jpeg', data }, connections);
}

async function uploadOnce(upload: MultipartUpload): Promise<{ ok: boolean; ms: number }> {
  const { status, body, ms } = await upload.send();
  if (status !== 201) console.log(`upload answered ${status}: ${body.slice(0, 200)}`);
  return { ok: status === 201, ms };
}

/**
 * `concurrency` lanes upload back to back; no lane starts an upload after
 * `seconds`, unless fewer than `minSamples` have succeeded, and never after
 * TAIL_CAP_FACTOR x `seconds`. `between`, when given, runs before each upload
 * of a lane and is not counted in its time. For the first `warmupSeconds` the
 * lanes already run but their uploads are not counted: the clock and the
 * counts start after them, on lanes that are already busy (the peak RSS
 * includes them).
 */
async function phase(
  kiln: BenchServer,
  data: Buffer,
  concurrency: number,
  seconds: number,
  options: { between?: () => Promise<unknown>; minSamples?: number; warmupSeconds?: number } = {},
): Promise<Phase> {
  const { between, minSamples = 0, warmupSeconds = 0 } = options;
  const upload = uploader(kiln, data, concurrency);
  const latenciesMs: number[] = [];
  let ok = 0;
  let failed = 0;
  const rss = new RssSampler(kiln.pid).start();
  const started = performance.now() + warmupSeconds * 1000;
  const deadline = started + seconds * 1000;
  const cap = started + seconds * 1000 * TAIL_CAP_FACTOR;
  const more = (): boolean => {
    const now = performance.now();
    return now < deadline || (ok < minSamples && now < cap);
  };
  const lane = async (): Promise<void> => {
    while (more()) {
      await between?.();
      const counted = performance.now() >= started;
      const r = await uploadOnce(upload);
      if (!counted) continue;
      if (r.ok) {
        ok++;
        latenciesMs.push(r.ms);
      } else failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  upload.close();
  return { concurrency, ok, failed, seconds: (performance.now() - started) / 1000, latenciesMs, peakRssMb: rss.stop() };
}

async function main(): Promise<void> {
  const files = corpusFiles([PHOTO], 'upload.bench');
  if (!files) return;
  const photo = files[0] as string;
  const data = readFileSync(photo);
  console.log(`# Upload path: ${PHOTO} (${(data.length / 1e6).toFixed(2)} MB, 4.1 MP), 4 variants, JPEG q85; c=1 alternating one by one with the engine alone, ${ROUNDS} rounds (a new server and engine process each) of ${fmt(ROUND_SECONDS, 0)} s and at least ${MIN_TAIL_SAMPLES} uploads each; c=4 in ${ROUNDS} rounds (a new server each) of ${SECONDS} s after ${C4_WARMUP_SECONDS} s uncounted; blobs: ${STORAGE === 's3' ? 'S3 (local S3-protocol server, its own process)' : 'local disk'}`);
  console.log(machineLine());

  ensureBuilt();
  const s3 = STORAGE === 's3' ? await startS3Child('kiln-bench') : null;
  /** A fresh server, warmed up with a few uploads; its idle RSS after them. */
  const warmServer = async (): Promise<{ kiln: BenchServer; idleRss: number | null }> => {
    // The protocol server keeps objects in memory: a long run would measure its heap, not Kiln.
    await s3?.clear();
    const kiln = await startBenchServer(s3 ? s3.env : {});
    const warm = uploader(kiln, data, 1);
    for (let i = 0; i < WARMUP_UPLOADS; i++) await uploadOnce(warm);
    warm.close();
    return { kiln, idleRss: new RssSampler(kiln.pid).start().stop() };
  };
  const turns: Array<{ round: number; engine: number[]; reference: number[]; c1: Phase; idleRss: number | null }> = [];
  const c4s: Phase[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const engine = new Engine(photo);
      const { kiln, idleRss } = await warmServer();
      try {
        await engine.renders(WARMUP_UPLOADS);
        await engine.references(WARMUP_UPLOADS);
        const engineTimes: number[] = [];
        const referenceTimes: number[] = [];
        const between = async (): Promise<void> => {
          engineTimes.push(...(await engine.renders(1)));
          referenceTimes.push(...(await engine.references(1)));
        };
        const c1 = await phase(kiln, data, 1, ROUND_SECONDS, { between, minSamples: MIN_TAIL_SAMPLES });
        turns.push({ round, engine: engineTimes, reference: referenceTimes, c1, idleRss });
      } finally {
        engine.close();
        await kiln.close();
      }
    }
    for (let round = 1; round <= ROUNDS; round++) {
      const { kiln } = await warmServer();
      try {
        c4s.push(await phase(kiln, data, 4, SECONDS, { warmupSeconds: C4_WARMUP_SECONDS }));
      } finally {
        await kiln.close();
      }
    }
  } finally {
    await s3?.close();
  }

  const p50 = (ms: number[]): number => percentile(ms, 50);
  const p99 = (ms: number[]): number => percentile(ms, 99);
  const rps = (p: Phase): number => p.ok / p.seconds;
  const overhead = (t: (typeof turns)[number]): number => (p50(t.c1.latenciesMs) - p50(t.engine)) / p50(t.engine);
  const tailRatio = (ms: number[]): number => p99(ms) / p50(ms);
  /** p50, p99, the slowest and p99 / p50, as table cells. */
  const latencyCells = (ms: number[]): string[] => [fmt(p50(ms), 0), fmt(p99(ms), 0), fmt(percentile(ms, 100), 0), fmt(tailRatio(ms))];
  const medianOf = (values: number[]): number => percentile(values, 50);
  const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);
  const pooledC4 = c4s.flatMap((c) => c.latenciesMs);
  const pooledRps = sum(c4s.map((c) => c.ok)) / sum(c4s.map((c) => c.seconds));

  console.log();
  console.log(
    table(
      ['measure', 'round', 'uploads', 'failed', 'uploads/s', 'p50 ms', 'p99 ms', 'max ms', 'p99 / p50', 'server peak RSS MB', 'overhead'],
      [
        ...turns.flatMap((t) => [
          ['machine reference (copy 12 MB x 60), c=1', t.round, t.reference.length, 0, '', ...latencyCells(t.reference), '', ''],
          ['engine only (stage + 4 variants), c=1', t.round, t.engine.length, 0, fmt(1000 / p50(t.engine), 2), ...latencyCells(t.engine), '', ''],
          ['HTTP upload, c=1', t.round, t.c1.ok, t.c1.failed, fmt(1000 / p50(t.c1.latenciesMs), 2), ...latencyCells(t.c1.latenciesMs), fmt(t.c1.peakRssMb, 0), `${fmt(overhead(t) * 100, 1)}%`],
        ]),
        ...c4s.map((c4, i) => ['HTTP upload, c=4', i + 1, c4.ok, c4.failed, fmt(rps(c4), 2), ...latencyCells(c4.latenciesMs), fmt(c4.peakRssMb, 0), '']),
        ['HTTP upload, c=4, all rounds pooled', '', sum(c4s.map((c) => c.ok)), sum(c4s.map((c) => c.failed)), fmt(pooledRps, 2), ...latencyCells(pooledC4), fmt(Math.max(...c4s.map((c) => c.peakRssMb ?? 0)), 0), ''],
      ],
    ),
  );
  const overheads = turns.map(overhead);
  const c1Tails = turns.map((t) => tailRatio(t.c1.latenciesMs));
  const engineTails = turns.map((t) => tailRatio(t.engine));
  const referenceTails = turns.map((t) => tailRatio(t.reference));
  const list = (values: number[], digits: number, unit = ''): string => values.map((v) => `${fmt(v, digits)}${unit}`).join(', ');
  console.log();
  console.log(`HTTP + storage overhead at c=1 over ${ROUNDS} rounds: ${list(overheads.map((o) => o * 100), 1, '%')}; median ${fmt(medianOf(overheads) * 100, 1)}%: ${verdict(medianOf(overheads) <= TARGET_OVERHEAD)} (target <= ${TARGET_OVERHEAD * 100}% of the engine's p50)`);
  console.log(`c=1 p99 / p50 over ${ROUNDS} rounds: ${list(c1Tails, 2)}; median ${fmt(medianOf(c1Tails))}: ${verdict(medianOf(c1Tails) <= TARGET_P99_RATIO)} (target <= ${TARGET_P99_RATIO})`);
  console.log(`  in the same rounds, the engine alone: ${list(engineTails, 2)} (median ${fmt(medianOf(engineTails))}); the machine reference: ${list(referenceTails, 2)} (median ${fmt(medianOf(referenceTails))})`);
  const c4Rates = c4s.map(rps);
  const c4Tails = c4s.map((c) => tailRatio(c.latenciesMs));
  console.log(`c=4 uploads/s over ${ROUNDS} rounds: ${list(c4Rates, 2)}; median ${fmt(medianOf(c4Rates), 2)}: ${verdict(medianOf(c4Rates) >= TARGET_RPS_C4)} (target >= ${TARGET_RPS_C4}/s)`);
  console.log(`c=4 p99 / p50 over ${ROUNDS} rounds: ${list(c4Tails, 2)}; median ${fmt(medianOf(c4Tails))}: ${verdict(medianOf(c4Tails) <= TARGET_P99_RATIO)} (target <= ${TARGET_P99_RATIO}); all rounds pooled: ${fmt(tailRatio(pooledC4))}`);
  console.log(`\nat c=1, uploads/s is 1000 / p50 for both (the two alternate, so neither runs the whole time).`);
  console.log(`server RSS after warm-up, idle, per round: ${turns.map((t) => fmt(t.idleRss, 0)).join(', ')} MB; peak RSS per level from /proc VmHWM (reset per level) and 50 ms VmRSS samples.`);
  console.log(`reference: the FastAPI + Pillow design Kiln replaces measures ~4.4 uploads/s at c=4 on this machine; c=4 uses ${pooledRps > 0 ? fmt(pooledRps / 4.4, 1) + 'x that' : 'n/a'}.`);
}

await main();
