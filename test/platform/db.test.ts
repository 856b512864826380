import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase, type Db } from '../../src/platform/db/index.js';
import { tempDataDir } from '../helpers/config.js';
import { createTestDatabase, hasPostgres } from '../helpers/pg.js';

/** The same migration and query suite on both dialects. */
function dialectSuite(name: string, open: () => Promise<{ db: Db; cleanup: () => Promise<void> }>, skip = false) {
  describe.skipIf(skip)(`database on ${name}`, () => {
    let db: Db;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      ({ db, cleanup } = await open());
    });
    afterAll(async () => {
      await db.close();
      await cleanup();
    });

    it('migrates to the latest schema, and again is a no-op', async () => {
      const first = await migrateToLatest(db);
      expect(first).toContain('0001_core');
      expect(await migrateToLatest(db)).toEqual([]);
    });

    it('stores and reads back rows with integer flags and ISO times', async () => {
      const now = new Date().toISOString();
      await db.kysely
        .insertInto('users')
        .values({ id: 'u1', email: 'A@x.io', email_lower: 'a@x.io', username: 'a', password_hash: 'h', is_active: 1, is_admin: 0, created_at: now, updated_at: now })
        .execute();
      const row = await db.kysely.selectFrom('users').selectAll().where('id', '=', 'u1').executeTakeFirstOrThrow();
      expect(row.is_active).toBe(1);
      expect(row.created_at).toBe(now);
    });

    it('enforces unique constraints', async () => {
      const now = new Date().toISOString();
      await expect(
        db.kysely
          .insertInto('users')
          .values({ id: 'u2', email: 'a@x.io', email_lower: 'a@x.io', username: 'b', password_hash: 'h', is_active: 1, is_admin: 0, created_at: now, updated_at: now })
          .execute(),
      ).rejects.toThrow();
    });
  });
}

dialectSuite('SQLite', async () => {
  const { dir, cleanup } = tempDataDir();
  return { db: openDatabase(undefined, dir), cleanup: async () => cleanup() };
});

dialectSuite(
  'PostgreSQL',
  async () => {
    const { url, drop } = await createTestDatabase();
    return { db: openDatabase(url, '/nonexistent'), cleanup: drop };
  },
  !hasPostgres,
);
