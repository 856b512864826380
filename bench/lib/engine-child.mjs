/**
 * Child process for bench/upload.bench.ts: the "engine only" side of the
 * comparison, in a process of its own so that its renders never share an
 * event loop, a thread pool or a heap with the bench's load generator. It
 * does what an upload does without HTTP or storage: stages the photo from a
 * file stream and renders the four gallery sizes, one at a time, with the
 * built engine in dist/ (as `npm start` runs it).
 *
 * Messages from the parent: { renders: n } renders n times, one after
 * another, and is answered with { times: [ms, …] }. { references: n } runs
 * the machine reference n times instead (below).
 *
 * The machine reference is a fixed memory-bound job with nothing of Kiln in
 * it: copying a buffer the size of the photo's decoded pixels (2560 x 1600 x
 * 3 bytes) REFERENCE_COPIES times, between two buffers made once at start,
 * so no allocation, page fault, thread or file is involved. Its p99 / p50 is
 * what this machine's memory gives a job that moves bytes as a render does.
 *
 *   node bench/lib/engine-child.mjs <photo> <tmpDir>   (with an IPC channel)
 */
import '../../dist/src/threadpool.js';
import { createReadStream } from 'node:fs';
import { discardStaged, stageUpload } from '../../dist/src/images/ingest.js';
import { renderVariants } from '../../dist/src/images/variants.js';

const [photo, tmpDir] = process.argv.slice(2);

const REFERENCE_BYTES = 2560 * 1600 * 3;
const REFERENCE_COPIES = 60;
const referenceFrom = Buffer.alloc(REFERENCE_BYTES, 1);
const referenceTo = Buffer.alloc(REFERENCE_BYTES);

async function once() {
  const started = performance.now();
  const staged = await stageUpload(createReadStream(photo), { tmpDir, maxBytes: 10 * 1024 * 1024 });
  try {
    await renderVariants(staged, ['original', 'medium', 'thumb', 'game'], { maxImagePixels: 50e6, jpegQuality: 85 });
  } finally {
    await discardStaged(staged);
  }
  return performance.now() - started;
}

function reference() {
  const started = performance.now();
  for (let i = 0; i < REFERENCE_COPIES; i++) referenceFrom.copy(referenceTo);
  return performance.now() - started;
}

process.on('message', async (message) => {
  const times = [];
  for (let i = 0; i < (message.renders ?? 0); i++) times.push(await once());
  for (let i = 0; i < (message.references ?? 0); i++) times.push(reference());
  process.send({ times });
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
