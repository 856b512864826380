/**
 * Variant benchmark: the four gallery sizes of the large corpus photos, side
 * by side in one run on all cores:
 *   (a) Kiln's engine as the server runs it (one process, every upload in
 *       flight at once, the decode limiter choosing how many decode together),
 *       with glibc's default allocator settings and with those `npm start` sets (package.json);
 *   (b) Pillow (Debian's /usr/bin/python3) doing the same outputs in two processes;
 *   (c) the floor: one full-size decode + encode per photo, djpeg | cjpeg -quality 85,
 *       in two parallel streams.
 * The contenders take turns for BENCH_ROUNDS rounds (default 3), so that a
 * slow spell of the machine falls on all of them rather than on one: the
 * same run of one contender moves by a fifth from one minute to the next on a
 * shared machine. The verdict is on the median of the rounds' ratios and on
 * the highest peak. Then the latency of one photo on one core (taskset -c 0).
 * Prints figures only.
 *
 *   npm run bench variants          (or: node --import tsx bench/variants.ts)
 *   BENCH_ROUNDS=5 npm run bench variants
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { corpusFiles, LARGE_PHOTOS, REPO_ROOT } from './lib/corpus.js';
import { ensureBuilt } from './lib/kiln-server.js';
import { fmt, hasTaskset, percentile, runChild, table, type ChildResult } from './lib/measure.js';
import { verdict } from './lib/report.js';
import { startCommand } from '../test/helpers/start-command.js';

const PYTHON = '/usr/bin/python3';
const WORKER = path.join(REPO_ROOT, 'bench', 'lib', 'kiln-variants-worker.mjs');
const PILLOW = path.join(REPO_ROOT, 'bench', 'pillow_variants.py');
const FLOOR = 'for f in "$@"; do djpeg "$f" | cjpeg -quality 85 > /dev/null; done';
/** Each photo is made twice per contender and round: 14 renders, a few seconds on two cores. */
const ROUNDS = 2;
/** Turns of every contender (BENCH_ROUNDS). */
const TURNS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
/** The targets: photos/s against Pillow's, and the server's peak RSS. */
const TARGET_X_PILLOW = 1.5;
const TARGET_PEAK_MB = 300;
const KILN_AS_STARTED = 'Kiln as npm start runs it';
/** The allocator settings and node flags of `npm start`. */
const START = startCommand();
const PILLOW_NAME = 'Pillow, 2 processes';

interface Row {
  name: string;
  photosPerSecond: number;
  peakRssMb: number | null;
  note: string;
  round?: number;
}

function parse(result: ChildResult, what: string): { photos: number; seconds: number; latenciesMs: number[]; bytes?: Array<Record<string, number>> } {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr.slice(-2000)}`);
  return JSON.parse(result.stdout.trim().split('\n').pop() as string);
}

/** node's flags as `npm start` sets them. */
const kilnArgs = (rounds: number, concurrent: boolean, files: string[]): string[] => [...START.nodeArgs, WORKER, String(rounds), concurrent ? '1' : '0', ...files];

async function kilnThroughput(files: string[], label: string, env: NodeJS.ProcessEnv): Promise<Row> {
  const r = await runChild(process.execPath, kilnArgs(ROUNDS, true, files), { env });
  const out = parse(r, label);
  return { name: label, photosPerSecond: out.photos / out.seconds, peakRssMb: r.peakRssMb, note: '1 process, all uploads in flight' };
}

async function pillowThroughput(files: string[]): Promise<Row> {
  const started = performance.now();
  // Two processes, each doing every photo once: 14 renders in all, as for Kiln.
  const runs = await Promise.all([0, 1].map(() => runChild(PYTHON, [PILLOW, String(ROUNDS / 2), ...files])));
  const seconds = (performance.now() - started) / 1000;
  const photos = runs.map((r) => parse(r, 'Pillow').photos).reduce((a, b) => a + b, 0);
  const peaks = runs.map((r) => r.peakRssMb ?? 0);
  return { name: PILLOW_NAME, photosPerSecond: photos / seconds, peakRssMb: peaks[0]! + peaks[1]!, note: `sum of 2 peaks (${peaks.map((p) => fmt(p, 0)).join(' + ')})` };
}

async function floorThroughput(files: string[]): Promise<Row> {
  const started = performance.now();
  const runs = await Promise.all([0, 1].map(() => runChild('/bin/sh', ['-c', FLOOR, 'sh', ...files])));
  const seconds = (performance.now() - started) / 1000;
  for (const r of runs) if (r.code !== 0) throw new Error(`djpeg | cjpeg failed: ${r.stderr}`);
  const peaks = runs.map((r) => r.peakRssMb ?? 0);
  return { name: 'floor: djpeg | cjpeg -quality 85, 2 streams', photosPerSecond: (2 * files.length) / seconds, peakRssMb: peaks[0]! + peaks[1]!, note: 'original only, no resizes' };
}

async function floorLatencies(files: string[]): Promise<number[]> {
  const ms: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const f of files) {
      const r = await runChild('/bin/sh', ['-c', FLOOR, 'sh', f], { cpu: 0 });
      ms.push(r.seconds * 1000);
    }
  }
  return ms;
}

function pillowAvailable(): boolean {
  return spawnSync(PYTHON, ['-c', 'import PIL'], { stdio: 'ignore' }).status === 0;
}

function commandAvailable(cmd: string): boolean {
  return spawnSync('/bin/sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

async function main(): Promise<void> {
  const files = corpusFiles(LARGE_PHOTOS, 'variants');
  if (!files) return;
  ensureBuilt();
  const [load1] = os.loadavg();
  console.log(`# Image variants: ${files.length} photos x ${ROUNDS}, original + medium + thumb + game, JPEG q85`);
  console.log(`node ${process.version}, ${os.availableParallelism()} cores, load average at start ${fmt(load1 ?? 0)}\n`);

  const hasPillow = pillowAvailable();
  if (!hasPillow) console.log(`Pillow: skipped, ${PYTHON} cannot import PIL (apt install python3-pil).`);
  const hasFloor = commandAvailable('djpeg') && commandAvailable('cjpeg');
  if (!hasFloor) console.log('floor: skipped, djpeg/cjpeg not found (apt install libjpeg-turbo-progs).');

  const rows: Row[] = [];
  for (let round = 1; round <= TURNS; round++) {
    const turn: Row[] = [];
    turn.push(await kilnThroughput(files, 'Kiln, glibc defaults', {}));
    turn.push(await kilnThroughput(files, KILN_AS_STARTED, START.env));
    if (hasPillow) turn.push(await pillowThroughput(files));
    if (hasFloor) turn.push(await floorThroughput(files));
    rows.push(...turn.map((r) => ({ ...r, round })));
  }

  /** The ratio to Pillow's rate in the same round. */
  const xPillow = (r: Row): number | null => {
    const pillow = rows.find((p) => p.name === PILLOW_NAME && p.round === r.round);
    return pillow ? r.photosPerSecond / pillow.photosPerSecond : null;
  };
  console.log(`## Throughput, all cores (${TURNS} rounds, the contenders taking turns)`);
  console.log(
    table(
      ['contender', 'round', 'photos/s', 'x Pillow', 'peak RSS MB', 'note'],
      rows.map((r) => [r.name, r.round ?? '', fmt(r.photosPerSecond), fmt(xPillow(r)), fmt(r.peakRssMb, 0), r.note]),
    ),
  );
  const kilnRows = rows.filter((r) => r.name === KILN_AS_STARTED);
  const ratios = kilnRows.map(xPillow).filter((x): x is number => x !== null);
  if (ratios.length > 0) {
    const median = percentile(ratios, 50);
    console.log(`${KILN_AS_STARTED} / Pillow over ${ratios.length} rounds: ${ratios.map((x) => fmt(x)).join(', ')}; median ${fmt(median)}x: ${verdict(median >= TARGET_X_PILLOW)} (target >= ${TARGET_X_PILLOW}x)`);
  }
  const peaks = kilnRows.map((r) => r.peakRssMb).filter((p): p is number => p !== null);
  if (peaks.length > 0) {
    const highest = Math.max(...peaks);
    console.log(`${KILN_AS_STARTED}, peak RSS over ${peaks.length} rounds: ${peaks.map((p) => fmt(p, 0)).join(', ')} MB; highest ${fmt(highest, 0)} MB: ${verdict(highest <= TARGET_PEAK_MB)} (target <= ${TARGET_PEAK_MB} MB)`);
  }
  console.log();

  const pin = hasTaskset ? 'taskset -c 0' : 'not pinned: taskset missing';
  const lat: Array<[string, number[]]> = [];
  const kiln = parse(await runChild(process.execPath, kilnArgs(ROUNDS, false, files), { cpu: 0, env: START.env }), 'Kiln latency');
  lat.push(['Kiln', kiln.latenciesMs]);
  if (hasPillow) lat.push(['Pillow', parse(await runChild(PYTHON, [PILLOW, String(ROUNDS), ...files], { cpu: 0 }), 'Pillow latency').latenciesMs]);
  if (hasFloor) lat.push(['floor (djpeg | cjpeg, process start included)', await floorLatencies(files)]);
  console.log(`\n## Latency of one photo on one core (${pin}), all four outputs`);
  console.log(table(['contender', 'median s', 'p90 s', 'samples'], lat.map(([n, ms]) => [n, fmt(percentile(ms, 50) / 1000, 3), fmt(percentile(ms, 90) / 1000, 3), ms.length])));

  if (kiln.bytes) {
    const sizes = Object.keys(kiln.bytes[0] ?? {});
    const mean = (s: string): number => kiln.bytes!.reduce((a, b) => a + (b[s] ?? 0), 0) / kiln.bytes!.length;
    console.log('\n## Kiln output, mean bytes per photo');
    console.log(table(sizes, [sizes.map((s) => Math.round(mean(s)))]));
  }
}

await main();
