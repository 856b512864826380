/**
 * Server memory under concurrent large uploads: 20 uploads of a ~9.7 MB
 * JPEG (the 17.9 MP elephants photo re-encoded by sharp at the highest
 * quality that stays under MAX_UPLOAD_SIZE, 10 MiB, so the server runs with
 * its defaults) start together, each body trickling in over ~2 s so all are
 * in flight at once. The built server runs in a child process (SQLite, fs
 * blobs, temp DATA_DIR); its peak RSS comes from /proc (VmHWM and 50 ms
 * VmRSS samples). Target: peak RSS <= 300 MB. Figures, never pass/fail.
 *
 *   npm run build && node --import tsx bench/run.ts memory     (or `npm run bench -- memory`)
 *   BENCH_UPLOADS=20 BENCH_TRICKLE_SECONDS=2 override the load; BENCH_SERVER_OUTPUT=1 prints the server's output at the end.
 */
import sharp from 'sharp';
import { corpusFiles } from './lib/corpus.js';
import { RssSampler, rssMb, startBenchServer } from './lib/kiln-server.js';
import { fmt, percentile, table } from './lib/measure.js';
import { machineLine, verdict } from './lib/report.js';
import { slowMultipartUpload, type UploadResult } from './lib/upload-client.js';

const SOURCE = 'elephants_5640x3172_sony_exif.jpg';
const UPLOADS = Number(process.env.BENCH_UPLOADS ?? 20);
const TRICKLE_SECONDS = Number(process.env.BENCH_TRICKLE_SECONDS ?? 2);
const MAX_UPLOAD = 10 * 1024 * 1024; // the server's default MAX_UPLOAD_SIZE
const LARGEST_BYTES = 10_000_000; // headroom under MAX_UPLOAD
const TARGET_MB = 300;

/** The highest JPEG quality whose file stays under LARGEST_BYTES: a large, valid, camera-like upload. */
async function largeJpeg(source: string): Promise<{ data: Buffer; quality: number; width: number; height: number }> {
  for (let quality = 99; quality >= 80; quality--) {
    const { data, info } = await sharp(source).jpeg({ quality }).toBuffer({ resolveWithObject: true });
    if (data.length <= LARGEST_BYTES) return { data, quality, width: info.width, height: info.height };
  }
  throw new Error('could not make a JPEG under the upload limit');
}

async function main(): Promise<void> {
  const files = corpusFiles([SOURCE], 'memory.bench');
  if (!files) return;
  const photo = await largeJpeg(files[0] as string);
  console.log(
    `# Memory: ${UPLOADS} concurrent uploads of ${(photo.data.length / 1e6).toFixed(2)} MB (${SOURCE} re-encoded at q${photo.quality}, ${photo.width}x${photo.height}, ${((photo.width * photo.height) / 1e6).toFixed(1)} MP), each body sent over ${TRICKLE_SECONDS} s; MAX_UPLOAD_SIZE ${MAX_UPLOAD} (default)`,
  );
  console.log(machineLine());

  const kiln = await startBenchServer();
  let results: Array<UploadResult | Error>;
  let idle: number | null;
  let peak: number | null;
  let seconds: number;
  let firstAnswerS = Number.NaN;
  try {
    idle = rssMb(kiln.pid);
    const rss = new RssSampler(kiln.pid).start();
    const started = performance.now();
    results = await Promise.all(
      Array.from({ length: UPLOADS }, () =>
        slowMultipartUpload(
          `${kiln.url}/projects/bench/images`,
          kiln.user.headers,
          { field: 'file', filename: 'large.jpg', type: 'image/jpeg', data: photo.data },
          { seconds: TRICKLE_SECONDS, chunks: Math.max(1, TRICKLE_SECONDS * 20), timeoutMs: 300_000 },
        ).then(
          (r) => {
            if (Number.isNaN(firstAnswerS)) firstAnswerS = (performance.now() - started) / 1000;
            return r;
          },
          (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
        ),
      ),
    );
    seconds = (performance.now() - started) / 1000;
    peak = rss.stop();
  } finally {
    await kiln.close();
    if (process.env.BENCH_SERVER_OUTPUT) console.log(kiln.kiln.output());
  }

  const answered = results.filter((r): r is UploadResult => !(r instanceof Error));
  const ok = answered.filter((r) => r.status === 201);
  const statuses = new Map<string, number>();
  for (const r of results) {
    const key = r instanceof Error ? `error: ${r.message}` : String(r.status);
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
  }
  const failedSample = answered.find((r) => r.status !== 201);
  const latencies = ok.map((r) => r.ms / 1000);

  console.log();
  console.log(
    table(
      ['measure', 'figure', 'target', 'verdict'],
      [
        ['server peak RSS (MB)', fmt(peak, 0), `<= ${TARGET_MB}`, verdict(peak === null ? null : peak <= TARGET_MB)],
        ['server RSS before the uploads (MB)', fmt(idle, 0), '', ''],
        ['uploads succeeded (201)', `${ok.length} / ${UPLOADS}`, `${UPLOADS} / ${UPLOADS}`, verdict(ok.length === UPLOADS)],
        ['answers', [...statuses].map(([k, n]) => `${k} x${n}`).join(', '), '', ''],
        ['total time, first byte sent to last answer (s)', fmt(seconds, 1), '', ''],
        ['first answer after (s)', fmt(firstAnswerS, 1), `> ${TRICKLE_SECONDS} (all in flight together)`, verdict(firstAnswerS > TRICKLE_SECONDS)],
        ['upload latency p50 / max (s)', `${fmt(percentile(latencies, 50), 1)} / ${fmt(percentile(latencies, 100), 1)}`, '', ''],
        ['throughput (uploads/s)', fmt(ok.length / seconds, 2), '', ''],
      ],
    ),
  );
  if (failedSample) console.log(`\na failed answer: ${failedSample.status} ${failedSample.body.slice(0, 300)}`);
}

await main();
