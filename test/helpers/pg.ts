import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL;
export const hasPostgres = Boolean(TEST_DATABASE_URL);

export type DatabaseName = 'SQLite' | 'PostgreSQL';

/** The databases a rule is checked on: SQLite always, PostgreSQL when TEST_DATABASE_URL is set. */
export const DATABASES: Array<{ name: DatabaseName; skip: boolean }> = [
  { name: 'SQLite', skip: false },
  { name: 'PostgreSQL', skip: !hasPostgres },
];

/**
 * Creates a database of its own on the test PostgreSQL server and returns
 * its URL and a function that drops it (with any connections still open).
 */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  if (!TEST_DATABASE_URL) throw new Error('TEST_DATABASE_URL is not set');
  const name = `kiln_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** The error a query gets when its connection is dropped under it (pg_terminate_backend), from the real server at `url`. */
export async function droppedConnectionError(url: string): Promise<unknown> {
  const [victim, admin] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
  victim.on('error', () => undefined);
  await Promise.all([victim.connect(), admin.connect()]);
  try {
    const pid = (await victim.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
    const sleeping = victim.query('select pg_sleep(10)').then(() => undefined, (err: unknown) => err);
    while ((await admin.query(`select 1 from pg_stat_activity where pid = $1 and query like 'select pg_sleep%'`, [pid])).rows.length === 0) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await admin.query('select pg_terminate_backend($1)', [pid]);
    return await sleeping;
  } finally {
    await Promise.all([victim.end().catch(() => undefined), admin.end()]);
  }
}
