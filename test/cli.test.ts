import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDataDir } from './helpers/config.js';
import { createTestDatabase, hasPostgres } from './helpers/pg.js';
import { MAIN } from './helpers/process.js';

const run = promisify(execFile);
const data = tempDataDir();
afterAll(() => data.cleanup());

async function migrate(env: Record<string, string>): Promise<string> {
  const { stdout } = await run(process.execPath, [MAIN, 'migrate'], { env: { ...process.env, LOG_LEVEL: 'silent', ...env } });
  return stdout.trim();
}

describe('kiln migrate', () => {
  it('applies every migration to a new SQLite database, then has nothing to do', async () => {
    const first = await migrate({ DATA_DIR: data.dir });
    expect(first).toMatch(/^applied: 0001_core, /);
    expect(first).toContain('0003_jobs');
    expect(await migrate({ DATA_DIR: data.dir })).toBe('database is up to date');
  });

  it.skipIf(!hasPostgres)('does the same on PostgreSQL', async () => {
    const db = await createTestDatabase();
    try {
      expect(await migrate({ DATA_DIR: data.dir, DATABASE_URL: db.url })).toMatch(/^applied: 0001_core, /);
      expect(await migrate({ DATA_DIR: data.dir, DATABASE_URL: db.url })).toBe('database is up to date');
    } finally {
      await db.drop();
    }
  });

  it('prints its usage for help', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'help']);
    expect(stdout).toContain('usage: kiln <command>');
    expect(stdout).toContain('migrate');
  });
});
