/**
 * Another process holding the SQLite file's write lock (a second `kiln` in a
 * long write, a `sqlite3` shell with an open transaction): the writes that
 * wait for it must not stop the event loop, so every other request of the
 * process goes on being answered; a write succeeds once the lock is free,
 * and fails as 503 `database_busy` when it stays held.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { openDatabase } from '../../src/platform/db/index.js';
import { tempDataDir } from '../helpers/config.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { fixture, postMultipart } from '../helpers/upload.js';
import { registerUser } from '../helpers/users.js';
import { expectProblem } from '../helpers/problem.js';

/** The longest the event loop went without running a timer, while `during` ran. */
async function longestStall<T>(during: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 5);
  try {
    return { result: await during(), stallMs };
  } finally {
    clearInterval(tick);
  }
}

/** Another connection to the same file, in a write transaction until released. */
function holdWriteLock(file: string): { release(): void } {
  const other = new SqliteDatabase(file);
  other.exec('begin immediate');
  return {
    release() {
      if (other.inTransaction) other.exec('rollback');
      other.close();
    },
  };
}

describe('a write that waits for another process\'s lock (SQLite)', () => {
  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('fails as 503 database_busy once it has waited its time, without stopping the event loop meanwhile', async () => {
    const data = tempDataDir();
    cleanups.push(() => data.cleanup());
    const db = openDatabase(undefined, data.dir, { busyWaitMs: 600 });
    cleanups.push(() => db.close());
    await sql`create table t (x integer)`.execute(db.kysely);
    const lock = holdWriteLock(path.join(data.dir, 'kiln.db'));
    cleanups.push(() => lock.release());

    const started = performance.now();
    const { result, stallMs } = await longestStall(() => sql`insert into t values (1)`.execute(db.kysely).then(() => null, (err: unknown) => err));
    expect(result).toMatchObject({ status: 503, code: 'database_busy', retryAfterSeconds: 1, cause: { code: 'SQLITE_BUSY' } });
    expect(performance.now() - started).toBeGreaterThanOrEqual(600);
    // SQLite's own wait blocks the thread for at most its short busy_timeout at a time (before: the whole wait).
    expect(stallMs).toBeLessThan(200);
    // Reads go on in WAL mode; the write goes through once the lock is free.
    lock.release();
    await sql`insert into t values (2)`.execute(db.kysely);
    const { rows } = await sql<{ x: number }>`select x from t`.execute(db.kysely);
    expect(rows).toEqual([{ x: 2 }]);
  });

  it('goes through when the lock is freed while it waits: a transaction too', async () => {
    const data = tempDataDir();
    cleanups.push(() => data.cleanup());
    const db = openDatabase(undefined, data.dir);
    cleanups.push(() => db.close());
    await sql`create table t (x integer)`.execute(db.kysely);
    const lock = holdWriteLock(path.join(data.dir, 'kiln.db'));
    cleanups.push(() => lock.release());
    // This timer fires only because the waiting write leaves the event loop free.
    setTimeout(() => lock.release(), 400);
    const { stallMs } = await longestStall(() =>
      db.kysely.transaction().execute(async (tx) => {
        await sql`insert into t values (1)`.execute(tx);
        await sql`insert into t values (2)`.execute(tx);
      }),
    );
    expect(stallMs).toBeLessThan(200);
    const { rows } = await sql<{ x: number }>`select x from t order by x`.execute(db.kysely);
    expect(rows).toEqual([{ x: 1 }, { x: 2 }]);
  });

  it('in a server: other requests are answered while an upload waits, the upload is stored once the lock is free, 503 when it is not', async () => {
    const server: TestServer = await startServer({ RATE_LIMIT_UPLOAD: '0' });
    cleanups.push(() => server.close());
    const owner = await registerUser(server.url, 'locked');
    const photo = fixture('rocket_small_640x427.jpg');
    const upload = () => postMultipart(`${server.url}/projects/locked/images`, [{ field: 'file', filename: 'a.jpg', data: photo, type: 'image/jpeg' }], owner.headers);

    const lock = holdWriteLock(path.join(server.dataDir, 'kiln.db'));
    cleanups.push(() => lock.release());
    const pending = upload();
    // While the upload waits for the lock, the process answers other requests at once.
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const route of ['/', '/openapi.json']) {
      const started = performance.now();
      expect((await fetch(`${server.url}${route}`)).status, route).toBe(200);
      expect(performance.now() - started, route).toBeLessThan(1000);
    }
    lock.release();
    const stored = await pending;
    expect(stored.status).toBe(201);

    // Held for longer than a write waits (10 s): a 503 to retry, with Retry-After, and nothing stored.
    const held = holdWriteLock(path.join(server.dataDir, 'kiln.db'));
    cleanups.push(() => held.release());
    const refused = await upload();
    held.release();
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    await expectProblem(refused, 503, 'database_busy');
    const listing = (await (await fetch(`${server.url}/projects/locked/images`)).json()) as { images: unknown[] };
    expect(listing.images).toHaveLength(1);
  }, 30_000);
});
