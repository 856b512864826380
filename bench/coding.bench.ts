/**
 * Huffman optimisation (`optimiseCoding`) per size: each large corpus photo
 * is resized to medium (fit 1600) and thumb (fit 400) once, and each result
 * is encoded at quality 85, 4:2:0, baseline, with and without optimisation,
 * three times (one libvips thread, as the engine runs). Prints total bytes
 * and mean encode time per size: the figures behind which sizes the engine
 * optimises (src/images/variants.ts). Figures, never pass/fail.
 *
 *   node --import tsx bench/run.ts coding     (or `npm run bench -- coding`)
 */
import sharp from 'sharp';
import { corpusFiles, LARGE_PHOTOS } from './lib/corpus.js';
import { fmt, table } from './lib/measure.js';
import { machineLine } from './lib/report.js';

const ROUNDS = 3;
const SIZES = [
  ['medium', 1600],
  ['thumb', 400],
] as const;

async function main(): Promise<void> {
  const files = corpusFiles(LARGE_PHOTOS, 'coding.bench');
  if (!files) return;
  sharp.cache(false);
  sharp.concurrency(1);
  console.log(`# Huffman optimisation: ${files.length} photos, medium and thumb, q85 4:2:0 baseline, ${ROUNDS} encodes each way`);
  console.log(machineLine());
  const rows: Array<Array<string | number>> = [];
  for (const [name, max] of SIZES) {
    const total = { plain: { bytes: 0, ms: 0 }, optimised: { bytes: 0, ms: 0 } };
    for (const file of files) {
      const { data, info } = await sharp(file).resize(max, max, { fit: 'inside' }).raw().toBuffer({ resolveWithObject: true });
      const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
      for (const [kind, optimiseCoding] of [['plain', false], ['optimised', true]] as const) {
        for (let i = 0; i < ROUNDS; i++) {
          const started = performance.now();
          const out = await sharp(data, raw).jpeg({ quality: 85, chromaSubsampling: '4:2:0', optimiseCoding }).toBuffer();
          total[kind].ms += performance.now() - started;
          if (i === 0) total[kind].bytes += out.length;
        }
      }
    }
    const encodes = files.length * ROUNDS;
    rows.push([
      name,
      total.plain.bytes,
      total.optimised.bytes,
      `${fmt((1 - total.optimised.bytes / total.plain.bytes) * 100, 1)}%`,
      fmt(total.plain.ms / encodes, 1),
      fmt(total.optimised.ms / encodes, 1),
      `${fmt(total.optimised.ms / total.plain.ms, 1)}x`,
    ]);
  }
  console.log(table(['size', 'bytes plain', 'bytes optimised', 'saved', 'ms plain', 'ms optimised', 'time'], rows));
}

await main();
