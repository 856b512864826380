/**
 * Imported first by main.ts: libuv's thread pool (file I/O, hashing, sharp's
 * work) is sized once, at its first use, so this must run before anything
 * touches it. Image work wants one thread per core plus room for file I/O.
 */
import os from 'node:os';

if (!process.env.UV_THREADPOOL_SIZE) {
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, os.availableParallelism() + 2));
}
