/**
 * Calibration of the photo quality thresholds (not a speed benchmark): runs
 * assessQuality over every photo of the corpus and over degraded copies of it,
 * and prints the tables docs/quality.md bases BLUR_THRESHOLD and
 * DUPLICATE_MAX_DISTANCE on. Re-run it after changing the measurement.
 *
 *   npx tsx bench/quality-calibration.ts [corpus-dir]   (default ../shared/corpus)
 *
 * Copies are made in memory with sharp. Blurred copies are blurred at the
 * working size, which is where the score is measured, so "sigma 3" means the
 * same visible softness for every photo whatever its resolution.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import {
  assessQuality,
  BLUR_THRESHOLD,
  DUPLICATE_MAX_DISTANCE,
  hammingDistance,
  WORKING_SIZE,
} from '../src/images/quality.js';

const BLUR_SIGMAS = [1, 1.5, 3] as const;

interface Row {
  file: string;
  /** Files showing the same picture share a group (the orient_* set and the dogs PNG). */
  group: string;
  dims: string;
  ms: number;
  sharp: number;
  half: number | null;
  blurred: number[];
  phash: string;
  dResize: number;
  dJpeg60: number;
}

const corpusDir = path.resolve(process.argv[2] ?? '../shared/corpus');

// orient_* are one photo under 8 EXIF orientations; dogs_rgba is the same
// photo again (resized, with a radial alpha). They must not count as
// "different photos" when measuring how far apart distinct pictures are.
function groupOf(file: string): string {
  return /^orient_\d\.jpg$/.test(file) || file.startsWith('dogs_rgba') ? 'friends' : file;
}

async function blurredAtWorkingSize(file: string, sigma: number): Promise<Buffer> {
  // Two pipelines so the blur certainly happens after the downscale.
  const small = await sharp(file, { autoOrient: true })
    .resize(WORKING_SIZE, WORKING_SIZE, { fit: 'inside' })
    .png()
    .toBuffer();
  return sharp(small).blur(sigma).png().toBuffer();
}

async function measure(file: string): Promise<Row> {
  const full = path.join(corpusDir, file);
  const meta = await sharp(full).metadata();
  const started = performance.now();
  const q = await assessQuality(full);
  const ms = performance.now() - started;

  const halfSize = Math.round(Math.max(q.width, q.height) / 2);
  // Flattened like assessQuality does: JPEG output would otherwise flatten alpha onto black.
  const half = await sharp(full, { autoOrient: true })
    .flatten({ background: '#ffffff' })
    .resize(halfSize, halfSize, { fit: 'inside' })
    .jpeg({ quality: 90 })
    .toBuffer();
  const jpeg60 = await sharp(full, { autoOrient: true }).flatten({ background: '#ffffff' }).jpeg({ quality: 60 }).toBuffer();
  const [qHalf, qJpeg60] = await Promise.all([assessQuality(half), assessQuality(jpeg60)]);
  const blurred: number[] = [];
  for (const sigma of BLUR_SIGMAS) blurred.push((await assessQuality(await blurredAtWorkingSize(full, sigma))).blur_score);

  return {
    file,
    group: groupOf(file),
    dims: `${meta.width}x${meta.height}`,
    ms,
    sharp: q.blur_score,
    // Halving a photo below the working size would enlarge it back: not a fair comparison.
    half: halfSize >= WORKING_SIZE ? qHalf.blur_score : null,
    blurred,
    phash: q.phash,
    dResize: hammingDistance(q.phash, qHalf.phash),
    dJpeg60: hammingDistance(q.phash, qJpeg60.phash),
  };
}

function fmt(n: number | null): string {
  return n === null ? '-' : n.toFixed(1);
}

async function main(): Promise<void> {
  const files = (await readdir(corpusDir)).filter((f) => /\.(jpe?g|png|webp)$/i.test(f)).sort();
  const rows: Row[] = [];
  for (const file of files) rows.push(await measure(file));

  console.log(`corpus: ${corpusDir} (${rows.length} photos), working size ${WORKING_SIZE} px`);
  console.log('ms = one assessQuality call on the original file (includes decoding; noisy on a busy machine)\n');
  console.log(`| file | stored | ms | sharp | 50% copy | ${BLUR_SIGMAS.map((s) => `blur σ${s}`).join(' | ')} | d(50%) | d(q60) | phash |`);
  console.log(`|---|---|---|---|---|${BLUR_SIGMAS.map(() => '---').join('|')}|---|---|---|`);
  for (const r of rows) {
    console.log(
      `| ${r.file} | ${r.dims} | ${r.ms.toFixed(0)} | ${fmt(r.sharp)} | ${fmt(r.half)} | ${r.blurred.map(fmt).join(' | ')} | ${r.dResize} | ${r.dJpeg60} | ${r.phash} |`,
    );
  }

  const minSharp = Math.min(...rows.map((r) => r.sharp));
  console.log('\nblur score (variance of the Laplacian):');
  console.log(`  sharp originals: min ${fmt(minSharp)} (${rows.find((r) => r.sharp === minSharp)?.file})`);
  BLUR_SIGMAS.forEach((sigma, i) => {
    const maxBlurred = Math.max(...rows.map((r) => r.blurred[i] ?? 0));
    console.log(`  blurred σ${sigma}: max ${fmt(maxBlurred)}  (gap to sharp min: x${(minSharp / maxBlurred).toFixed(1)})`);
  });
  const misclassified = rows.filter((r) => r.sharp < BLUR_THRESHOLD || (r.blurred[BLUR_SIGMAS.length - 1] ?? 0) >= BLUR_THRESHOLD);
  console.log(`  BLUR_THRESHOLD = ${BLUR_THRESHOLD}: ${misclassified.length} misclassified at σ3 ${misclassified.map((r) => r.file).join(', ')}`);

  console.log('\npHash Hamming distance (64 bits):');
  console.log(`  50% resized copy: max ${Math.max(...rows.map((r) => r.dResize))}`);
  console.log(`  JPEG q60 copy:    max ${Math.max(...rows.map((r) => r.dJpeg60))}`);
  const same: number[] = [];
  const distinct: number[] = [];
  let closest = { d: 65, a: '', b: '' };
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      const a = rows[i];
      const b = rows[j];
      if (a === undefined || b === undefined) continue;
      const d = hammingDistance(a.phash, b.phash);
      if (a.group === b.group) same.push(d);
      else {
        distinct.push(d);
        if (d < closest.d) closest = { d, a: a.file, b: b.file };
      }
    }
  }
  console.log(`  same picture (orient_1..8, dogs_rgba): max ${Math.max(...same)} over ${same.length} pairs`);
  console.log(`  distinct pictures: min ${closest.d} (${closest.a} vs ${closest.b})`);
  const sorted = [...distinct].sort((p, q) => p - q);
  const mean = distinct.reduce((p, q) => p + q, 0) / distinct.length;
  console.log(`  distinct pictures: ${distinct.length} pairs, lowest ${sorted.slice(0, 6).join(', ')}, mean ${mean.toFixed(1)}`);
  console.log(`  DUPLICATE_MAX_DISTANCE = ${DUPLICATE_MAX_DISTANCE}`);
}

await main();
