/**
 * Imported first by main.ts: libuv's thread pool (file I/O, hashing, sharp's
 * work) is sized once, at its first use, so this must run before anything
 * touches it. Image work wants one thread per core plus room for file I/O.
 */
import os from 'node:os';
import { readDotenv } from './config/env.js';

/** A .env that cannot be read is reported by loadConfig, in one line like any bad setting. */
function dotenvSetting(): string | undefined {
  try {
    return readDotenv(process.cwd()).UV_THREADPOOL_SIZE?.trim();
  } catch {
    return undefined;
  }
}

// The environment wins over .env, as for every other setting (read synchronously: the pool must not start first).
// A bad value is refused by loadConfig (UV_THREADPOOL_SIZE) before any work reaches the pool.
const fromDotenv = dotenvSetting();
if (!process.env.UV_THREADPOOL_SIZE) {
  process.env.UV_THREADPOOL_SIZE = fromDotenv || String(Math.max(4, os.availableParallelism() + 2));
}
