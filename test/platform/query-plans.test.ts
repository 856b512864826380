/**
 * The plans SQLite makes for the queries that meet a shop's years of data:
 * the hourly job sweep and the listings an admin pages through. Each is run
 * through the real code on a migrated database, its SQL captured, and
 * SQLite's EXPLAIN QUERY PLAN read: an index that the query cannot use, or a
 * sort of every matching row, fails here long before it is slow anywhere.
 * (A data-volume audit found these reading 100000 jobs or 200000 users a page.)
 */
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect, type CompiledQuery } from 'kysely';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { migrateToLatest, openDatabase } from '../../src/platform/db/index.js';
import type { Database } from '../../src/platform/db/schema.js';
import { encodePosition } from '../../src/platform/http/cursor.js';
import { JobStore } from '../../src/platform/jobs/store.js';
import { listUsers } from '../../src/modules/users/repo.js';
import { tempDataDir } from '../helpers/config.js';

const temp = tempDataDir();
let sqlite: SQLite.Database;
let kysely: Kysely<Database>;
const captured: CompiledQuery[] = [];

beforeAll(async () => {
  const db = openDatabase(undefined, temp.dir);
  await migrateToLatest(db);
  await db.close();
  sqlite = new SQLite(path.join(temp.dir, 'kiln.db'));
  kysely = new Kysely<Database>({
    dialect: new SqliteDialect({ database: sqlite }),
    log: (event) => void captured.push(event.query),
  });
});
afterAll(async () => {
  await kysely.destroy();
  temp.cleanup();
});

/** The plan of every statement `run` makes, one string per statement. */
async function plansOf(run: () => Promise<unknown>): Promise<string[]> {
  captured.length = 0;
  await run();
  return captured.map((q) =>
    (sqlite.prepare(`explain query plan ${q.sql}`).all(...q.parameters) as Array<{ detail: string }>).map((row) => row.detail).join('\n'),
  );
}

describe('SQLite query plans', () => {
  it('the job retention sweep finds old jobs through the finished_at index', async () => {
    const store = new JobStore(kysely, 'sqlite', systemClock);
    const [plan] = await plansOf(() => store.deleteFinished(new Date().toISOString(), ['photogrammetry'], 500));
    expect(plan).toContain('USING INDEX jobs_finished (finished_at<?)');
  });

  it("an admin's job listing by status or by type reads its page off an index, newest first, with no sort", async () => {
    const store = new JobStore(kysely, 'sqlite', systemClock);
    const cursor = encodePosition({ createdAt: new Date().toISOString(), id: 'j' });
    const plans = await plansOf(async () => {
      await store.list({ all: true, status: 'completed' });
      await store.list({ all: true, status: 'failed', cursor });
      await store.list({ all: true, type: 'ean_fetch' });
      await store.list({ all: true, type: 'ean_fetch', cursor });
    });
    expect(plans).toHaveLength(4);
    expect(plans.slice(0, 2).every((p) => p.includes('jobs_status_created'))).toBe(true);
    expect(plans.slice(2).every((p) => p.includes('jobs_type_created'))).toBe(true);
    for (const plan of plans) expect(plan).not.toContain('TEMP B-TREE');
  });

  it("the admin's user pages are read in creation order off an index, with no sort", async () => {
    const plans = await plansOf(async () => {
      await listUsers(kysely, 20);
      await listUsers(kysely, 20, { createdAt: new Date().toISOString(), id: 'u' });
    });
    expect(plans).toHaveLength(2);
    for (const plan of plans) {
      expect(plan).toContain('users_created');
      expect(plan).not.toContain('TEMP B-TREE');
    }
  });
});
