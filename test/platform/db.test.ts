import { statSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import SqliteDatabase from 'better-sqlite3';
import { sql, type Kysely, type Migration } from 'kysely';
import { migrateToLatest, openDatabase, reusingStatements, type Db } from '../../src/platform/db/index.js';
import { createContext } from '../../src/context.js';
import { migrations } from '../../src/platform/db/migrations/index.js';
import { tempDataDir, testConfig } from '../helpers/config.js';
import { capturingLog } from '../helpers/logs.js';
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

describe('reusingStatements (SQLite)', () => {
  const open = (max?: number) => {
    const raw = new SqliteDatabase(':memory:');
    raw.exec('create table t (id integer primary key, name text)');
    raw.exec("insert into t (name) values ('a'), ('b'), ('c')");
    return { raw, db: reusingStatements(raw, max) };
  };

  it('hands out one prepared statement per SQL text, and keeps only the most recently used', () => {
    const { raw, db } = open(2);
    const a = db.prepare('select 1');
    expect(db.prepare('select 1')).toBe(a);
    db.prepare('select 2');
    db.prepare('select 3'); // past the limit: 'select 1' was used least recently
    expect(db.prepare('select 1')).not.toBe(a);
    raw.close();
  });

  it('gives a query of a statement still being iterated a statement of its own', () => {
    const { raw, db } = open();
    const rows = db.prepare('select name from t order by id').iterate([]);
    expect(rows.next().value).toEqual({ name: 'a' });
    // The same SQL while the first is unfinished: reusing it would throw "This statement is busy".
    expect(db.prepare('select name from t order by id').all([])).toEqual([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
    expect([...rows]).toEqual([{ name: 'b' }, { name: 'c' }]);
    raw.close();
  });

  it('sees a column a migration added after the statement was first prepared', () => {
    const { raw, db } = open();
    expect(db.prepare('select * from t where id = ?').all([1])).toEqual([{ id: 1, name: 'a' }]);
    raw.exec("alter table t add column colour text default 'red'");
    expect(db.prepare('select * from t where id = ?').all([1])).toEqual([{ id: 1, name: 'a', colour: 'red' }]);
    raw.close();
  });
});

/**
 * Each dialect applies each pending migration in a transaction of its own: a
 * migration that fails halfway (or a `kiln migrate` killed halfway) leaves
 * none of its tables behind and nothing recorded, while those before it stay
 * applied, so the next run starts it again from the beginning.
 */
function failingMigrationSuite(name: string, open: () => Promise<{ db: Db; cleanup: () => Promise<void> }>, skip = false) {
  describe.skipIf(skip)(`migrations on ${name}`, () => {
    it('a migration that fails halfway leaves none of its tables and nothing recorded; the one before it is applied and recorded', async () => {
      const { db, cleanup } = await open();
      try {
        const steps: Record<string, Migration> = {
          '0001_whole': {
            async up(k: Kysely<unknown>) {
              await k.schema.createTable('whole').addColumn('id', 'text').execute();
            },
          },
          '0002_half': {
            async up(k: Kysely<unknown>) {
              await k.schema.createTable('first_half').addColumn('id', 'text').execute();
              throw new Error('killed here');
            },
          },
        };
        const provider = { getMigrations: async () => steps };
        await expect(migrateToLatest(db, provider)).rejects.toThrow(/migration failed \(0002_half\): killed here/);
        const tables = (await db.kysely.introspection.getTables()).map((t) => t.name);
        expect(tables).toContain('whole');
        expect(tables).not.toContain('first_half');
        const recorded = await db.kysely.selectFrom('kysely_migration' as never).select('name' as never).execute();
        expect(recorded).toEqual([{ name: '0001_whole' }]);

        // Mended, the next run goes on from the failed one.
        steps['0002_half'] = { async up(k: Kysely<unknown>) { await k.schema.createTable('first_half').addColumn('id', 'text').execute(); } };
        expect(await migrateToLatest(db, provider)).toEqual(['0002_half']);
      } finally {
        await db.close();
        await cleanup();
      }
    });

    it('a database a newer version migrated is refused with words that say so, and left as it was', async () => {
      const { db, cleanup } = await open();
      try {
        await migrateToLatest(db);
        await db.kysely.insertInto('kysely_migration' as never).values({ name: '9999_from_a_newer_kiln', timestamp: new Date().toISOString() } as never).execute();
        const before = await db.kysely.selectFrom('kysely_migration' as never).selectAll().execute();
        await expect(migrateToLatest(db)).rejects.toThrow(
          /migrated by a newer version of Kiln \(it has migration 9999_from_a_newer_kiln, which this version does not know\); downgrades are not supported/,
        );
        expect(await db.kysely.selectFrom('kysely_migration' as never).selectAll().execute()).toEqual(before);
      } finally {
        await db.close();
        await cleanup();
      }
    });
  });
}

failingMigrationSuite('SQLite', async () => {
  const data = tempDataDir();
  return { db: openDatabase(undefined, data.dir), cleanup: async () => data.cleanup() };
});
failingMigrationSuite(
  'PostgreSQL',
  async () => {
    const pg = await createTestDatabase();
    return { db: openDatabase(pg.url, '/nonexistent'), cleanup: () => pg.drop() };
  },
  !hasPostgres,
);

describe('a transaction SQLite rolled back by itself (SQLite)', () => {
  it('fails with the error that made SQLite roll it back (a full database), not with the ROLLBACK after it', async () => {
    const data = tempDataDir();
    const db = openDatabase(undefined, data.dir);
    try {
      await sql`create table t (b blob)`.execute(db.kysely);
      const { rows } = await sql<{ page_count: number }>`pragma page_count`.execute(db.kysely);
      // Room for a few more pages only: the big insert fills the database.
      await sql.raw(`pragma max_page_count = ${(rows[0]?.page_count ?? 2) + 2}`).execute(db.kysely);
      const failed = await db.kysely
        .transaction()
        .execute(async (tx) => {
          await sql`insert into t values (randomblob(10))`.execute(tx);
          await sql`insert into t values (randomblob(1000000))`.execute(tx);
        })
        .then(
          () => null,
          (err: unknown) => err as { code?: string },
        );
      expect(failed?.code).toBe('SQLITE_FULL');
      // And the database goes on: a small write works.
      await sql`insert into t values (randomblob(10))`.execute(db.kysely);
    } finally {
      await db.close();
      data.cleanup();
    }
  });
});

describe('a start that migrates', () => {
  it('logs the migrations it applied and how long they took, and empties the write-ahead log they filled; a start with none to apply logs nothing of them', async () => {
    const data = tempDataDir();
    try {
      const first = capturingLog<{ msg: string; migrations?: string[]; ms?: number }>();
      const ctx = await createContext(testConfig(data.dir), { log: first.log });
      // The write-ahead log the migrations' commits filled is written back and emptied, not left at its size.
      expect(statSync(path.join(data.dir, 'kiln.db-wal')).size).toBe(0);
      await ctx.close();
      const line = first.lines.find((l) => l.msg === 'applied database migrations');
      expect(line?.migrations).toEqual(Object.keys(migrations));
      expect(line?.ms).toBeGreaterThanOrEqual(0);

      const again = capturingLog<{ msg: string }>();
      await (await createContext(testConfig(data.dir), { log: again.log })).close();
      expect(again.lines.map((l) => l.msg)).not.toContain('applied database migrations');
    } finally {
      data.cleanup();
    }
  });
});

describe('a PostgreSQL server that takes the connection and never answers (a stuck pooler, a half-open network)', () => {
  it('fails the query once the 10 s connect timeout has passed, not later, and not never', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const data = tempDataDir();
    const db = openDatabase(`postgres://kiln@127.0.0.1:${port}/kiln`, data.dir);
    try {
      const started = performance.now();
      await expect(db.ping()).rejects.toThrow(/timeout/i);
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(9_500);
      expect(elapsed).toBeLessThan(14_000);
    } finally {
      await db.close().catch(() => undefined);
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
      data.cleanup();
    }
  }, 30_000);
});
