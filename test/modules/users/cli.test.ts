import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { runUsersCommand } from '../../../src/modules/users/cli.js';
import { tempDataDir, testConfig } from '../../helpers/config.js';
import { startServer } from '../../helpers/server.js';
import { call } from '../../auth/helpers.js';

const ROOT = path.join(import.meta.dirname, '..', '..', '..');
let data: { dir: string; cleanup: () => void };

beforeAll(() => {
  data = tempDataDir();
});
afterAll(() => data.cleanup());

/** The real command line, as `kiln users …` runs it (from source, so no build is needed first). */
function kiln(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, DATA_DIR: data.dir, LOG_LEVEL: 'silent', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('kiln users create', () => {
  it('--admin makes an admin who can sign in, with the password from KILN_PASSWORD', async () => {
    const run = kiln(['users', 'create', '--email', 'Chief@Example.com', '--username', 'chief', '--admin'], { KILN_PASSWORD: 'cli-password-1' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ email: 'Chief@Example.com', username: 'chief', is_admin: true, is_active: true });

    const server = await startServer({}, { dataDir: data.dir });
    try {
      const pair = await call(server.url, 'POST', '/auth/login', { body: { email: 'chief@example.com', password: 'cli-password-1' } });
      expect(pair.status).toBe(200);
      const list = await call(server.url, 'GET', '/admin/users', { headers: { authorization: `Bearer ${String(pair.body.access_token)}` } });
      expect(list.status).toBe(200);
    } finally {
      await server.close();
    }
  }, 90_000);

  it('says what is wrong, in one line and a non-zero exit, for a taken email or a missing password', () => {
    const taken = kiln(['users', 'create', '--email', 'chief@example.com', '--username', 'other', '--password', 'long-enough-1']);
    expect(taken.status).not.toBe(0);
    expect(taken.stderr).toMatch(/^kiln: .*email/);
    const missing = kiln(['users', 'create', '--email', 'x@example.com', '--username', 'xyz'], { KILN_PASSWORD: '' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain('KILN_PASSWORD');
  }, 120_000); // two processes that each compile the source first

  it('checks the same rules as registration', async () => {
    const config = testConfig(data.dir);
    await expect(runUsersCommand(config, ['create', '--email', 'y@example.com', '--username', 'yyy', '--password', 'short'], {})).rejects.toThrow(UsageError);
    await expect(runUsersCommand(config, ['delete'], {})).rejects.toThrow(/usage/);
    const user = await runUsersCommand(config, ['create', '--email', 'y@example.com', '--username', 'yyy', '--password', 'long-enough-2'], {});
    expect(user.is_admin).toBe(false);
  });
});
