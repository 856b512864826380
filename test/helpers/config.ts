import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config, type Env } from '../../src/config.js';

/** A fresh DATA_DIR in the OS temp dir; remove it with the returned cleanup. */
export function tempDataDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A Config as `kiln serve` would build it from `env`, over `dataDir`, with
 * logs silenced and rate limits off unless a test turns them on.
 */
export function testConfig(dataDir: string, env: Env = {}): Config {
  return loadConfig(
    {
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      RATE_LIMIT_AUTH: '0',
      RATE_LIMIT_UPLOAD: '0',
      RATE_LIMIT_DEFAULT: '0',
      ...env,
    },
    dataDir,
  );
}
