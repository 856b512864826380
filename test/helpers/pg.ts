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
