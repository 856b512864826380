/**
 * Custom orders end to end: POST /api/images/upload with an order of 4
 * photos of 3–5 MP (multipart `files`), against the built server in a child
 * process (SQLite, fs blobs, temp DATA_DIR), at concurrency 1 and 4 for a
 * bounded time each: orders/s, p50, p99, the server's peak RSS and its CPU
 * seconds per order. Beside it, the same 4 photos as 4 single gallery
 * uploads (POST /projects/{id}/images) sent one after another, timed as one
 * unit. Target: an order of 4 costs <= 1.1x four gallery uploads (latency at
 * c=1, server CPU per unit, throughput at c=4). Figures, never pass/fail.
 *
 *   npm run bench -- orders        (BENCH_SECONDS=15 sets the time per phase,
 *                                   run as 3 slices alternating with the other kind)
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { postMultipart } from '../test/helpers/upload.js';
import { corpusFiles } from './lib/corpus.js';
import { RssSampler, startBenchServer, type BenchServer } from './lib/kiln-server.js';
import { fmt, percentile, table } from './lib/measure.js';
import { machineLine, verdict } from './lib/report.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const WARMUP = 2;
const SLICES = 3;
const TARGET_RATIO = 1.1;

interface Photo {
  name: string;
  data: Buffer;
  type: string;
  megapixels: number;
}

/**
 * Four different real photos of 3–5 MP, in three formats. The corpus has two
 * of that size as they are; two larger ones are scaled into the range first
 * (outside the timed phases).
 */
async function photos(): Promise<Photo[] | null> {
  const files = corpusFiles(['path_2560x1600_olympus_exif.jpg', 'picos_cmyk_2000x1500.jpg', 'aitzgorri_3088x2056.webp', 'sunset_4272x2848.jpg'], 'orders.bench');
  if (!files) return null;
  const [pathJpg, picos, aitzgorri, sunset] = files as [string, string, string, string];
  const list: Array<Omit<Photo, 'megapixels'>> = [
    { name: 'path_2560x1600_olympus_exif.jpg', data: readFileSync(pathJpg), type: 'image/jpeg' },
    { name: 'picos_cmyk_2000x1500.jpg', data: readFileSync(picos), type: 'image/jpeg' },
    { name: 'aitzgorri_2700x1798.webp', data: await sharp(aitzgorri).resize({ width: 2700 }).webp({ quality: 80 }).toBuffer(), type: 'image/webp' },
    { name: 'sunset_2500x1667.jpg', data: await sharp(sunset).resize({ width: 2500 }).jpeg({ quality: 90 }).toBuffer(), type: 'image/jpeg' },
  ];
  return Promise.all(
    list.map(async (p) => {
      const m = await sharp(p.data).metadata();
      return { ...p, megapixels: ((m.width ?? 0) * (m.height ?? 0)) / 1e6 };
    }),
  );
}

/** utime + stime of a process in seconds, from /proc (Linux); null elsewhere. */
function cpuSeconds(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // After "pid (comm) ": utime and stime are fields 14 and 15 of the line, 12 and 13 here; clock ticks of 1/100 s on Linux.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null; // not Linux: CPU per unit is reported as n/a
  }
}

type Unit = (kiln: BenchServer, lane: number) => Promise<boolean>;

async function order(kiln: BenchServer, set: Photo[]): Promise<boolean> {
  const parts = [{ field: 'pet_name', data: 'Bench' }, ...set.map((p) => ({ field: 'files', filename: p.name, data: p.data, type: p.type }))];
  const res = await postMultipart(`${kiln.url}/api/images/upload`, parts, kiln.user.headers);
  const body = await res.text();
  if (res.status !== 201) console.log(`order answered ${res.status}: ${body.slice(0, 200)}`);
  return res.status === 201;
}

/** The same photos as single gallery uploads, one after another, as a client without orders would send them. */
async function galleryUploads(kiln: BenchServer, set: Photo[], lane: number): Promise<boolean> {
  for (const p of set) {
    const res = await postMultipart(`${kiln.url}/projects/bench-${lane}/images`, [{ field: 'file', filename: p.name, data: p.data, type: p.type }], kiln.user.headers);
    const body = await res.text();
    if (res.status !== 201) {
      console.log(`gallery upload answered ${res.status}: ${body.slice(0, 200)}`);
      return false;
    }
  }
  return true;
}

interface Phase {
  what: string;
  concurrency: number;
  ok: number;
  failed: number;
  seconds: number;
  latenciesMs: number[];
  peakRssMb: number | null;
  /** Server CPU seconds used during the phase (null off Linux). */
  cpu: number | null;
}

/** `concurrency` lanes run units back to back; no lane starts one after `seconds`. */
async function phase(kiln: BenchServer, what: string, unit: Unit, concurrency: number, seconds: number): Promise<Phase> {
  const latenciesMs: number[] = [];
  let ok = 0;
  let failed = 0;
  const rss = new RssSampler(kiln.pid).start();
  const cpuBefore = cpuSeconds(kiln.pid);
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const lane = async (n: number): Promise<void> => {
    while (performance.now() < deadline) {
      const t = performance.now();
      if (await unit(kiln, n)) {
        ok++;
        latenciesMs.push(performance.now() - t);
      } else failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, n) => lane(n)));
  const cpuAfter = cpuSeconds(kiln.pid);
  const cpu = cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null;
  return { what, concurrency, ok, failed, seconds: (performance.now() - started) / 1000, latenciesMs, peakRssMb: rss.stop(), cpu };
}

/** Slices of one kind of unit at one concurrency, added up. */
function merge(slices: Phase[]): Phase {
  const [first] = slices as [Phase];
  const sum = (f: (p: Phase) => number | null): number | null => slices.reduce<number | null>((a, p) => (a === null || f(p) === null ? null : a + (f(p) as number)), 0);
  return {
    what: first.what,
    concurrency: first.concurrency,
    ok: sum((p) => p.ok) ?? 0,
    failed: sum((p) => p.failed) ?? 0,
    seconds: sum((p) => p.seconds) ?? 0,
    latenciesMs: slices.flatMap((p) => p.latenciesMs),
    peakRssMb: slices.reduce<number | null>((a, p) => (p.peakRssMb === null ? a : Math.max(a ?? 0, p.peakRssMb)), null),
    cpu: sum((p) => p.cpu),
  };
}

/**
 * Orders and gallery uploads take turns in SLICES short slices each, so a
 * change of load on the machine during the run falls on both alike.
 */
async function compare(kiln: BenchServer, units: Record<'order' | 'gallery', Unit>, concurrency: number): Promise<Phase[]> {
  const slices: Record<'order' | 'gallery', Phase[]> = { order: [], gallery: [] };
  for (let i = 0; i < SLICES; i++) {
    for (const what of ['order', 'gallery'] as const) slices[what].push(await phase(kiln, what, units[what], concurrency, SECONDS / SLICES));
  }
  return [merge(slices.order), merge(slices.gallery)];
}

const cpuPerUnit = (p: Phase): number | null => (p.cpu === null || p.ok === 0 ? null : p.cpu / p.ok);
const p50 = (p: Phase): number => percentile(p.latenciesMs, 50);
const p99 = (p: Phase): number => percentile(p.latenciesMs, 99);
const perSecond = (p: Phase): number => p.ok / p.seconds;

function report(set: Photo[], phases: Phase[]): void {
  const find = (what: string, c: number): Phase => phases.find((p) => p.what === what && p.concurrency === c) as Phase;
  const [o1, o4, g1, g4] = [find('order', 1), find('order', 4), find('gallery', 1), find('gallery', 4)];
  console.log();
  console.log(
    table(
      ['unit (4 photos)', 'c', 'units', 'failed', 'units/s', 'p50 ms', 'p99 ms', 'server CPU s / unit', 'server CPU share (cores)', 'server peak RSS MB'],
      phases.map((p) => [
        p.what === 'order' ? 'one order of 4' : '4 gallery uploads in a row',
        p.concurrency,
        p.ok,
        p.failed,
        fmt(perSecond(p), 2),
        fmt(p50(p), 0),
        fmt(p99(p), 0),
        fmt(cpuPerUnit(p), 2),
        fmt(p.cpu === null ? null : p.cpu / p.seconds, 2),
        fmt(p.peakRssMb, 0),
      ]),
    ),
  );
  const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : a / b);
  const latency = ratio(p50(o1), p50(g1));
  const cpu = ratio(cpuPerUnit(o4), cpuPerUnit(g4));
  const throughput = ratio(perSecond(g4), perSecond(o4));
  console.log();
  console.log(
    table(
      ['order cost / 4 gallery uploads', 'ratio', `target <= ${TARGET_RATIO}x`],
      [
        ['p50 latency at c=1', fmt(latency), verdict(latency === null ? null : latency <= TARGET_RATIO)],
        ['server CPU per unit at c=4', fmt(cpu), verdict(cpu === null ? null : cpu <= TARGET_RATIO)],
        ['time per unit at c=4 (inverse throughput)', fmt(throughput), verdict(throughput === null ? null : throughput <= TARGET_RATIO)],
      ],
    ),
  );
  console.log(`\nphotos: ${set.map((p) => `${p.name} (${p.megapixels.toFixed(1)} MP, ${(p.data.length / 1e6).toFixed(2)} MB)`).join(', ')}`);
  console.log('an order renders original, medium and thumb plus the quality check per photo, all 4 photos at once; a gallery upload renders original, medium, thumb and game.');
}

async function main(): Promise<void> {
  const set = await photos();
  if (!set) return;
  console.log(`# Custom orders: one order of ${set.length} photos vs ${set.length} single gallery uploads; ${SECONDS} s per phase`);
  console.log(machineLine());
  const kiln = await startBenchServer();
  const phases: Phase[] = [];
  try {
    const orderUnit: Unit = (k) => order(k, set);
    const galleryUnit: Unit = (k, lane) => galleryUploads(k, set, lane);
    for (let i = 0; i < WARMUP; i++) await Promise.all([orderUnit(kiln, 0), galleryUnit(kiln, 0)]);
    for (const c of [1, 4]) phases.push(...(await compare(kiln, { order: orderUnit, gallery: galleryUnit }, c)));
  } finally {
    await kiln.close();
  }
  report(set, phases);
}

await main();
