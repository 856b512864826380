// What createContext does with the DATA_DIR it is given, beyond opening the parts (which their own tests cover).
import { mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext } from '../src/context.js';
import { tempDataDir, testConfig } from './helpers/config.js';
import { lockDirectory } from './helpers/files.js';
import { capturingLog } from './helpers/logs.js';
import { dropRedisPrefix, newPrefix } from './helpers/redis.js';

const REDIS_URL = process.env.TEST_REDIS_URL;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** DATA_DIR/tmp, and a way to leave in it a file last written `ageMs` ago, as a process killed mid-upload leaves one. */
function tempFiles(dataDir: string): { tmp: string; leave: (name: string, ageMs: number) => void } {
  const tmp = path.join(dataDir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const leave = (name: string, ageMs: number) => {
    writeFileSync(path.join(tmp, name), 'half an upload');
    const when = new Date(Date.now() - ageMs);
    utimesSync(path.join(tmp, name), when, when);
  };
  return { tmp, leave };
}

describe('createContext', () => {
  it('removes temp files that a process killed mid-upload left over an hour ago, and keeps recent ones', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const { tmp, leave } = tempFiles(temp.dir);
    leave('upload-0123456789abcdef0123456789abcdef', 3 * 60 * 60 * 1000);
    leave('blob-0123456789abcdef', 61 * 60 * 1000);
    // Another process on the same DATA_DIR may be writing this one right now.
    leave('upload-fedcba9876543210fedcba9876543210', 5_000);

    const ctx = await createContext(testConfig(temp.dir));
    cleanups.push(() => ctx.close());
    expect(readdirSync(tmp)).toEqual(['upload-fedcba9876543210fedcba9876543210']);
  });

  it('keeps a temp file untouched for less than an hour, and logs how many older ones it removed', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const { tmp, leave } = tempFiles(temp.dir);
    leave('upload-00000000000000000000000000000001', 2 * 60 * 60 * 1000);
    leave('blob-0000000000000001', 90 * 60 * 1000);
    // Stalled for 50 minutes, but not yet an hour: an upload of another process may still be under way.
    leave('upload-00000000000000000000000000000002', 50 * 60 * 1000);

    const { log, lines } = capturingLog();
    const ctx = await createContext(testConfig(temp.dir), { log });
    cleanups.push(() => ctx.close());
    expect(readdirSync(tmp)).toEqual(['upload-00000000000000000000000000000002']);
    expect(lines.filter((l) => l.msg === 'removed temp files left by an earlier run')).toEqual([expect.objectContaining({ level: 30, files: 2, dir: tmp })]);
  });

  it('replaces an empty stored JWT secret (a first start killed while writing it) instead of failing every later start', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    mkdirSync(path.join(temp.dir, 'secrets'));
    writeFileSync(path.join(temp.dir, 'secrets', 'jwt_secret'), '');
    const ctx = await createContext(testConfig(temp.dir));
    cleanups.push(() => ctx.close());
    const stored = readFileSync(path.join(temp.dir, 'secrets', 'jwt_secret'), 'utf8');
    expect(stored.length).toBeGreaterThanOrEqual(64);
    // Nothing but the secret is left in the directory, and the next start reads the same one.
    expect(readdirSync(path.join(temp.dir, 'secrets'))).toEqual(['jwt_secret']);
    const again = await createContext(testConfig(temp.dir));
    cleanups.push(() => again.close());
    expect(Buffer.from(again.secrets.linkSecret).equals(Buffer.from(ctx.secrets.linkSecret))).toBe(true);
  });

  it('stops a start that cannot make its JWT secret with one line naming DATA_DIR, where, and why', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const secrets = path.join(temp.dir, 'secrets');
    mkdirSync(secrets);
    const locked = lockDirectory(secrets);
    cleanups.push(locked.unlock);
    await expect(createContext(testConfig(temp.dir))).rejects.toThrow(
      `DATA_DIR: cannot make the generated JWT secret in ${secrets} (${locked.code}); free the space, mend the permissions, or set JWT_SECRET`,
    );
  });

  it("removes a secret's draft a killed first start left beside it, and not one another process is writing now", async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const secrets = path.join(temp.dir, 'secrets');
    mkdirSync(secrets);
    writeFileSync(path.join(secrets, 'jwt_secret'), 'a'.repeat(64));
    const draft = (name: string, ageMs: number) => {
      writeFileSync(path.join(secrets, name), 'b'.repeat(64));
      const when = new Date(Date.now() - ageMs);
      utimesSync(path.join(secrets, name), when, when);
    };
    draft('jwt_secret.abcdefgh.tmp', 5 * 60_000);
    draft('jwt_secret.ijklmnop.tmp', 1_000);
    const old = new Date(Date.now() - 24 * 60 * 60_000);
    utimesSync(path.join(secrets, 'jwt_secret'), old, old);

    const ctx = await createContext(testConfig(temp.dir));
    cleanups.push(() => ctx.close());
    expect(readdirSync(secrets).sort()).toEqual(['jwt_secret', 'jwt_secret.ijklmnop.tmp']);
    expect(readFileSync(path.join(secrets, 'jwt_secret'), 'utf8')).toBe('a'.repeat(64));
  });

  it('makes one JWT secret when several processes start together on a new DATA_DIR', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const contexts = await Promise.all([1, 2, 3, 4].map(() => createContext(testConfig(temp.dir))));
    for (const ctx of contexts) cleanups.push(() => ctx.close());
    const secrets = new Set(contexts.map((ctx) => Buffer.from(ctx.secrets.linkSecret).toString('hex')));
    expect(secrets.size).toBe(1);
    expect(readdirSync(path.join(temp.dir, 'secrets'))).toEqual(['jwt_secret']);
  });

  it.skipIf(!REDIS_URL)('warns at the start when processes may share a database or Redis but JWT_SECRET is generated, and only then', async () => {
    const warnings = async (env: Record<string, string>): Promise<string[]> => {
      const temp = tempDataDir();
      cleanups.push(temp.cleanup);
      const lines: string[] = [];
      const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
      const ctx = await createContext(testConfig(temp.dir, env), { log: pino({ level: 'warn' }, sink) });
      await ctx.close();
      return lines.map((l) => (JSON.parse(l) as { msg: string }).msg).filter((m) => m.includes('JWT_SECRET'));
    };
    const prefix = newPrefix();
    cleanups.push(() => dropRedisPrefix(REDIS_URL as string, prefix));
    const shared = { REDIS_URL: REDIS_URL as string, REDIS_PREFIX: prefix };
    expect(await warnings(shared)).toEqual([expect.stringContaining('must share one JWT_SECRET')]);
    expect(await warnings({ ...shared, JWT_SECRET: 'a-shared-secret-of-at-least-32-characters' })).toEqual([]);
    expect(await warnings({})).toEqual([]);
  });
});
