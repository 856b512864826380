/**
 * Child process for bench/upload.bench.ts: the "engine only" side of the
 * comparison, in a process of its own so that its renders never share an
 * event loop, a thread pool or a heap with the bench's load generator. It
 * does what an upload does without HTTP or storage: stages the photo from a
 * file stream and renders the four gallery sizes, one at a time, with the
 * built engine in dist/ (as `npm start` runs it).
 *
 * Messages from the parent: { renders: n } renders n times, one after
 * another, and is answered with { times: [ms, …] }.
 *
 *   node bench/lib/engine-child.mjs <photo> <tmpDir>   (with an IPC channel)
 */
import '../../dist/src/threadpool.js';
import { createReadStream } from 'node:fs';
import { discardStaged, stageUpload } from '../../dist/src/images/ingest.js';
import { renderVariants } from '../../dist/src/images/variants.js';

const [photo, tmpDir] = process.argv.slice(2);

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

process.on('message', async (message) => {
  const times = [];
  for (let i = 0; i < (message.renders ?? 0); i++) times.push(await once());
  process.send({ times });
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
