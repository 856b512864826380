/**
 * What a start makes of the account settings: the JWT secret Kiln generates
 * when JWT_SECRET is unset outlives a restart, and a half-given or bad admin
 * bootstrap stops `kiln serve` with one line naming the variable.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../../helpers/config.js';
import { startServer } from '../../helpers/server.js';
import { bearer, call, login, register } from '../../auth/helpers.js';

const run = promisify(execFile);
const dataDir = tempDataDir();
afterAll(() => dataDir.cleanup());

describe('the generated JWT secret', () => {
  it('is kept in DATA_DIR, readable by its owner only, so tokens survive a restart', async () => {
    const first = await startServer({}, { dataDir: dataDir.dir });
    const account = await register(first.url);
    const pair = await login(first.url, account);
    await first.close();

    const file = path.join(dataDir.dir, 'secrets', 'jwt_secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const second = await startServer({}, { dataDir: dataDir.dir });
    try {
      const me = await call(second.url, 'GET', '/users/me', { headers: bearer(pair.access_token) });
      expect(me.status).toBe(200);
      expect(me.body.id).toBe(account.id);
    } finally {
      await second.close();
    }
  });
});

/** `kiln serve` with `env` until it stops by itself: its exit code and what it wrote to stderr. */
async function serveUntilStopped(env: Record<string, string>): Promise<{ status: number; stderr: string }> {
  const dir = tempDataDir();
  try {
    await run(process.execPath, ['dist/src/main.js', 'serve'], {
      env: { ...process.env, DATA_DIR: dir.dir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
      timeout: 20_000,
    });
    return { status: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { status: e.code, stderr: e.stderr };
  } finally {
    dir.cleanup();
  }
}

describe('a bad admin bootstrap stops the start with one line naming the variable', () => {
  it.each([
    [{ ADMIN_EMAIL: 'boss@example.com' }, 'ADMIN_PASSWORD'],
    [{ ADMIN_PASSWORD: 'admin-password-1' }, 'ADMIN_EMAIL'],
    [{ ADMIN_EMAIL: 'not an email', ADMIN_PASSWORD: 'admin-password-1' }, 'ADMIN_EMAIL'],
    [{ ADMIN_EMAIL: 'boss@example.com', ADMIN_PASSWORD: 'short' }, 'ADMIN_PASSWORD'],
  ])('%o names %s', async (env, variable) => {
    const { status, stderr } = await serveUntilStopped(env);
    expect(status).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr.trim()).toMatch(new RegExp(`^kiln: ${variable}: `));
  });
});
