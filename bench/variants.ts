/**
 * Variant benchmark: the four gallery sizes of the large corpus photos, side
 * by side in one run on all cores:
 *   (a) Kiln's engine as the server runs it (one process, every upload in
 *       flight at once, the decode limiter choosing how many decode together),
 *       with glibc's default arenas and with MALLOC_ARENA_MAX=1 (as `npm start` runs it);
 *   (b) Pillow (Debian's /usr/bin/python3) doing the same outputs in two processes;
 *   (c) the floor: one full-size decode + encode per photo, djpeg | cjpeg -quality 85,
 *       in two parallel streams.
 * Then the latency of one photo on one core (taskset -c 0). Prints figures only.
 *
 *   npm run bench          (or: node --import tsx bench/variants.ts)
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { corpusFiles, LARGE_PHOTOS, REPO_ROOT } from './lib/corpus.js';
import { ensureBuilt } from './lib/kiln-server.js';
import { fmt, hasTaskset, percentile, runChild, table, type ChildResult } from './lib/measure.js';

const PYTHON = '/usr/bin/python3';
const WORKER = path.join(REPO_ROOT, 'bench', 'lib', 'kiln-variants-worker.mjs');
const PILLOW = path.join(REPO_ROOT, 'bench', 'pillow_variants.py');
const FLOOR = 'for f in "$@"; do djpeg "$f" | cjpeg -quality 85 > /dev/null; done';
/** Each photo is made twice per contender: 14 renders, enough for a stable rate on two cores. */
const ROUNDS = 2;

interface Row {
  name: string;
  photosPerSecond: number;
  peakRssMb: number | null;
  note: string;
}

function parse(result: ChildResult, what: string): { photos: number; seconds: number; latenciesMs: number[]; bytes?: Array<Record<string, number>> } {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr.slice(-2000)}`);
  return JSON.parse(result.stdout.trim().split('\n').pop() as string);
}

/** V8's semi-spaces capped as `npm start` caps them (package.json). */
const kilnArgs = (rounds: number, concurrent: boolean, files: string[]): string[] => ['--max-semi-space-size=4', WORKER, String(rounds), concurrent ? '1' : '0', ...files];

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
  return { name: 'Pillow, 2 processes', photosPerSecond: photos / seconds, peakRssMb: peaks[0]! + peaks[1]!, note: `sum of 2 peaks (${peaks.map((p) => fmt(p, 0)).join(' + ')})` };
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

  const rows: Row[] = [];
  const kilnPlain = await kilnThroughput(files, 'Kiln, default glibc arenas', {});
  rows.push(kilnPlain);
  rows.push(await kilnThroughput(files, 'Kiln as npm start runs it (MALLOC_ARENA_MAX=1)', { MALLOC_ARENA_MAX: '1' }));
  const hasPillow = pillowAvailable();
  if (hasPillow) rows.push(await pillowThroughput(files));
  else console.log(`Pillow: skipped, ${PYTHON} cannot import PIL (apt install python3-pil).`);
  const hasFloor = commandAvailable('djpeg') && commandAvailable('cjpeg');
  if (hasFloor) rows.push(await floorThroughput(files));
  else console.log('floor: skipped, djpeg/cjpeg not found (apt install libjpeg-turbo-progs).');

  const pillowRate = rows.find((r) => r.name.startsWith('Pillow'))?.photosPerSecond;
  console.log('## Throughput, all cores');
  console.log(
    table(
      ['contender', 'photos/s', 'x Pillow', 'peak RSS MB', 'note'],
      rows.map((r) => [r.name, fmt(r.photosPerSecond), pillowRate ? fmt(r.photosPerSecond / pillowRate) : 'n/a', fmt(r.peakRssMb, 0), r.note]),
    ),
  );

  const pin = hasTaskset ? 'taskset -c 0' : 'not pinned: taskset missing';
  const lat: Array<[string, number[]]> = [];
  const kiln = parse(await runChild(process.execPath, kilnArgs(ROUNDS, false, files), { cpu: 0 }), 'Kiln latency');
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
