// `kiln backup DIR`: a copy taken while the server serves, which restores into a new DATA_DIR with every
// account, token and image; refusals that write nothing; the two blob passes around the database's snapshot.
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { copyBlobsAround, libpqEnvironment } from '../../src/modules/backup.js';
import { FsBlobStore } from '../../src/platform/blobs/fs.js';
import { tempDataDir } from '../helpers/config.js';
import { canMountSmallDisk, filesUnder, smallDisk } from '../helpers/files.js';
import { createTestDatabase, hasPostgres } from '../helpers/pg.js';
import { MAIN, startKiln, type KilnProcess } from '../helpers/process.js';
import { fixture, postMultipart } from '../helpers/upload.js';
import { registerUser } from '../helpers/users.js';

const run = promisify(execFile);
const canMount = canMountSmallDisk();
const hasPgDump = spawnSync('pg_dump', ['--version']).status === 0;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function newDir(): string {
  const dir = tempDataDir();
  cleanups.push(dir.cleanup);
  return dir.dir;
}

async function serve(env: Record<string, string>): Promise<KilnProcess> {
  const kiln = await startKiln(env);
  cleanups.push(() => kiln.stop());
  return kiln;
}

/** `kiln backup <args>` as an operator runs it, with `env` for its settings; never throws on a failed exit. */
async function backup(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, 'backup', ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('kiln backup', () => {
  it('copies a serving deployment; restored into a new DATA_DIR it has every account, token and image, and files that agree with its rows', async () => {
    const live = newDir();
    const kiln = await serve({ DATA_DIR: live });
    const user = await registerUser(kiln.url);
    const uploads = [];
    for (const name of ['rocket_small_640x427.jpg', 'orient_6.jpg']) {
      const res = await postMultipart(`${kiln.url}/projects/holiday/images`, [{ field: 'file', filename: name, data: fixture(name), type: 'image/jpeg' }], user.headers);
      expect(res.status).toBe(201);
      uploads.push((await res.json()) as { image_id: string });
    }
    const order = await postMultipart(`${kiln.url}/api/images/upload`, [{ field: 'files', filename: 'pet.jpg', data: fixture('rocket_small_640x427.jpg'), type: 'image/jpeg' }, { field: 'pet_name', data: 'Rex' }], user.headers);
    expect(order.status).toBe(201);
    const { order_id } = (await order.json()) as { order_id: string };
    const thumbs = await Promise.all(uploads.map(async (u) => Buffer.from(await (await fetch(`${kiln.url}/projects/holiday/images/${u.image_id}?size=thumb`)).arrayBuffer())));

    const dir = path.join(newDir(), 'nightly');
    const made = await backup({ DATA_DIR: live }, dir);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const report = JSON.parse(made.stdout) as Record<string, unknown>;
    // Two gallery images of four sizes each, and the order's file in three.
    expect(report).toMatchObject({ dir, database: 'kiln.db', secrets: 1, blobs: 11, vanished: 0 });
    expect(report.bytes).toBe((await filesUnder(path.join(dir, 'blobs'))).reduce((sum, f) => sum + statSync(f).size, 0));
    // Password hashes and the signing key: for the owner's eyes only.
    expect(mode(dir)).toBe(0o700);
    expect(mode(path.join(dir, 'kiln.db'))).toBe(0o600);
    expect(mode(path.join(dir, 'secrets', 'jwt_secret'))).toBe(0o600);

    // After the backup, the live deployment moves on; the copy keeps what it had.
    expect((await fetch(`${kiln.url}/projects/holiday/images/${uploads[0]?.image_id}`, { method: 'DELETE', headers: user.headers })).status).toBe(204);
    await kiln.stop();

    const restored = newDir();
    cpSync(dir, restored, { recursive: true });
    const again = await serve({ DATA_DIR: restored });
    // The same signing key: a token issued before the backup still works, and the password still signs in.
    const me = await fetch(`${again.url}/users/me`, { headers: user.headers });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { id: string }).id).toBe(user.id);
    const login = await fetch(`${again.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: user.email, password: user.password }) });
    expect(login.status).toBe(200);
    const listing = (await (await fetch(`${again.url}/projects/holiday/images`)).json()) as { images: Array<{ image_id: string }> };
    expect(listing.images.map((i) => i.image_id)).toEqual(uploads.map((u) => u.image_id));
    for (const [i, u] of uploads.entries()) {
      for (const size of ['original', 'medium', 'game']) expect((await fetch(`${again.url}/projects/holiday/images/${u.image_id}?size=${size}`)).status).toBe(200);
      const thumb = await fetch(`${again.url}/projects/holiday/images/${u.image_id}?size=thumb`);
      expect(Buffer.from(await thumb.arrayBuffer()).equals(thumbs[i] as Buffer)).toBe(true);
    }
    const got = (await (await fetch(`${again.url}/api/images/orders/${order_id}`, { headers: user.headers })).json()) as { order: { files: Array<{ file_id: string }> } };
    const fileId = got.order.files[0]?.file_id;
    expect((await fetch(`${again.url}/api/images/orders/${order_id}/files/${fileId}?size=thumb`, { headers: user.headers })).status).toBe(200);
  });

  it('refuses a directory with files in it, one inside DATA_DIR, and a DATA_DIR without its database, writing nothing', async () => {
    const live = newDir();
    const kiln = await serve({ DATA_DIR: live });
    await registerUser(kiln.url);
    const used = newDir();
    mkdirSync(path.join(used, 'last-week'));
    const empty = newDir();
    const target = path.join(newDir(), 'b');
    const [full, inside, none] = await Promise.all([
      backup({ DATA_DIR: live }, used),
      backup({ DATA_DIR: live }, path.join(live, 'backup')),
      backup({ DATA_DIR: empty }, target),
    ]);

    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/is not empty: give a new or empty directory/);
    expect(readdirSync(used)).toEqual(['last-week']);

    expect(inside.code).toBe(1);
    expect(inside.stderr).toMatch(/is inside DATA_DIR/);
    expect(existsSync(path.join(live, 'backup'))).toBe(false);

    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/there is no database at .*kiln\.db/);
    // Neither the backup nor a new, empty database for the next start to take as the deployment's.
    expect(existsSync(target)).toBe(false);
    expect(existsSync(path.join(empty, 'kiln.db'))).toBe(false);
  });

  it('wants exactly one directory', async () => {
    const live = newDir();
    const answers = await Promise.all([[], ['a', 'b'], ['--all']].map((args) => backup({ DATA_DIR: live }, ...args)));
    for (const wrong of answers) {
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/usage: kiln backup DIR/);
    }
    expect(readdirSync(live)).toEqual([]);
  });

  it('copies around files in the store that are not Kiln\'s (counted as skipped), and refuses a store without the files its database knows', async () => {
    const live = newDir();
    const kiln = await serve({ DATA_DIR: live });
    const user = await registerUser(kiln.url);
    expect((await postMultipart(`${kiln.url}/projects/p/images`, [{ field: 'file', filename: 'a.jpg', data: fixture('rocket_small_640x427.jpg'), type: 'image/jpeg' }], user.headers)).status).toBe(201);
    // What a file manager or an editor leaves.
    writeFileSync(path.join(live, 'blobs', 'gallery', '.DS_Store'), 'x');
    writeFileSync(path.join(live, 'blobs', 'gallery', 'thumb copy.jpg'), 'x');
    const dir = path.join(newDir(), 'b');
    const made = await backup({ DATA_DIR: live }, dir);
    expect(made.stderr).toBe('');
    expect(JSON.parse(made.stdout)).toMatchObject({ blobs: 4, skipped: 2 });

    // The deployment's database, with a DATA_DIR (so a blob store) that is not the deployment's: a cron line without its settings.
    const elsewhere = newDir();
    const wrong = await backup({ DATA_DIR: elsewhere, DATABASE_URL: `sqlite:${path.join(live, 'kiln.db')}` }, path.join(newDir(), 'c'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/the database has stored images, but the blob store \(.*\) holds none/);
  });

  it('refuses a directory that is inside DATA_DIR through a symlink', async () => {
    const live = newDir();
    const kiln = await serve({ DATA_DIR: live });
    await registerUser(kiln.url);
    mkdirSync(path.join(live, 'blobs', 'gallery', 'zz'), { recursive: true });
    const link = path.join(newDir(), 'looks-outside');
    symlinkSync(path.join(live, 'blobs', 'gallery', 'zz'), link);
    const tried = await backup({ DATA_DIR: live }, link);
    expect(tried.code).toBe(1);
    expect(tried.stderr).toMatch(/is inside DATA_DIR/);
    expect(readdirSync(path.join(live, 'blobs', 'gallery', 'zz'))).toEqual([]);
  });

  it.runIf(canMount)('a backup that fails midway (its disk full) leaves nothing that could pass for one, and says why', async () => {
    const live = newDir();
    const kiln = await serve({ DATA_DIR: live });
    const user = await registerUser(kiln.url);
    for (let i = 0; i < 2; i++) {
      const res = await postMultipart(`${kiln.url}/projects/p/images`, [{ field: 'file', filename: 'a.jpg', data: fixture('path_2560x1600_olympus_exif.jpg'), type: 'image/jpeg' }], user.headers);
      expect(res.status).toBe(201);
    }
    // 1 MB: room for the secret and some blobs, not for two 4 MP originals.
    const small = smallDisk(1);
    if (!small) throw new Error('could not mount a tmpfs');
    cleanups.push(() => small.remove());
    const failed = await backup({ DATA_DIR: live }, small.dir);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/ENOSPC/);
    expect(failed.stdout).toBe('');
    // The directory was there before (a mount point): it stays, empty.
    expect(readdirSync(small.dir)).toEqual([]);
    // And the live deployment is as it was.
    expect((await fetch(`${kiln.url}/projects/p/images`)).status).toBe(200);
  });

  it.skipIf(!hasPostgres || !hasPgDump)('with PostgreSQL: pg_dump\'s snapshot between the blob passes; pg_restore and the copied files bring the deployment back', async () => {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const live = newDir();
    const kiln = await serve({ DATA_DIR: live, DATABASE_URL: database.url });
    const user = await registerUser(kiln.url);
    const res = await postMultipart(`${kiln.url}/projects/p/images`, [{ field: 'file', filename: 'a.jpg', data: fixture('rocket_small_640x427.jpg'), type: 'image/jpeg' }], user.headers);
    expect(res.status).toBe(201);
    const { image_id } = (await res.json()) as { image_id: string };
    const dir = path.join(newDir(), 'b');
    const made = await backup({ DATA_DIR: live, DATABASE_URL: database.url }, dir);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    expect(JSON.parse(made.stdout)).toMatchObject({ database: 'kiln.pgdump', secrets: 1, blobs: 4 });
    expect(mode(path.join(dir, 'kiln.pgdump'))).toBe(0o600);
    expect(existsSync(path.join(dir, 'kiln.db'))).toBe(false);
    await kiln.stop();

    const restoredDb = await createTestDatabase();
    cleanups.push(restoredDb.drop);
    await run('pg_restore', ['--no-owner', '--dbname', restoredDb.url, path.join(dir, 'kiln.pgdump')]);
    const restored = newDir();
    cpSync(dir, restored, { recursive: true });
    const again = await serve({ DATA_DIR: restored, DATABASE_URL: restoredDb.url });
    expect((await fetch(`${again.url}/users/me`, { headers: user.headers })).status).toBe(200);
    expect((await fetch(`${again.url}/projects/p/images/${image_id}?size=thumb`)).status).toBe(200);
  });

  it('with PostgreSQL and no pg_dump to run: fails saying what to install, and leaves nothing', async () => {
    const live = newDir();
    const dir = path.join(newDir(), 'b');
    // No server needed: the blob pass finds an empty store, then the dump cannot start. A PATH with nothing on it
    // (node itself is started by its full path).
    const made = await backup({ DATA_DIR: live, DATABASE_URL: 'postgres://kiln@127.0.0.1:1/kiln', PATH: newDir() }, dir);
    expect(made.code).toBe(1);
    expect(made.stderr).toMatch(/pg_dump is not on PATH: .*postgresql-client/);
    expect(existsSync(dir)).toBe(false);
  });

  it('libpq gets the URL in its environment, password included, never on the command line', () => {
    expect(libpqEnvironment('postgres://kiln:s%40cret@db.internal:6543/shop?sslmode=require')).toEqual({
      PGHOST: 'db.internal',
      PGPORT: '6543',
      PGUSER: 'kiln',
      PGPASSWORD: 's@cret',
      PGDATABASE: 'shop',
      PGSSLMODE: 'require',
    });
    expect(libpqEnvironment('postgresql:///kiln?host=%2Fvar%2Frun%2Fpostgresql')).toEqual({ PGHOST: '/var/run/postgresql', PGDATABASE: 'kiln' });
  });
});

describe('copyBlobsAround', () => {
  it('takes another snapshot and pass while rows of the snapshot lack their files, and says how many still do after its last try', async () => {
    const root = newDir();
    const store = new FsBlobStore(path.join(root, 'blobs'), path.join(root, 'tmp'));
    mkdirSync(path.join(root, 'tmp'));
    await store.put('gallery/kept/thumb.jpg', Buffer.from('one'), 'image/jpeg');
    // The first snapshot has a row whose files were deleted before the copy reached them; the next one no longer has it.
    const snapshots: Array<Map<string, string[]>> = [new Map([['gallery', ['kept', 'deleted']]]), new Map([['gallery', ['kept']]])];
    let taken = 0;
    const report = await copyBlobsAround(store, path.join(newDir(), 'blobs'), async () => void (taken += 1), async () => snapshots[taken - 1] ?? null);
    expect(taken).toBe(2);
    expect(report).toMatchObject({ blobs: 1, missing: 0 });

    // A row that never has its files: three tries, then the count.
    let tries = 0;
    const stuck = await copyBlobsAround(store, path.join(newDir(), 'blobs'), async () => void (tries += 1), async () => new Map([['gallery', ['kept', 'gone']], ['orders', ['f1']]]));
    expect(tries).toBe(3);
    expect(stuck.missing).toBe(2);
  });

  it('copies in its second pass a blob stored while the snapshot was taken, and counts one deleted between listing and reading as vanished', async () => {
    const root = newDir();
    const store = new FsBlobStore(path.join(root, 'blobs'), path.join(root, 'tmp'));
    mkdirSync(path.join(root, 'tmp'));
    await store.put('gallery/first/thumb.jpg', Buffer.from('one'), 'image/jpeg');
    await store.put('gallery/gone/thumb.jpg', Buffer.from('two'), 'image/jpeg');
    // Deleted after the listing named it, before its read: what a delete racing the copy does.
    const racing = Object.assign(Object.create(store) as FsBlobStore, {
      read: async (key: string) => {
        if (key === 'gallery/gone/thumb.jpg') await store.delete(key);
        return store.read(key);
      },
    });
    const out = path.join(newDir(), 'blobs');
    let firstPass: string[] = [];
    const report = await copyBlobsAround(racing, out, async () => {
      firstPass = (await filesUnder(out)).map((f) => path.relative(out, f)).sort();
      // An upload that lands while the database is copied: its row may be in the snapshot, so its files must be in the copy.
      await store.put('orders/o1/f1/original.jpg', Buffer.from('three!'), 'image/jpeg');
    });
    expect(firstPass).toEqual(['gallery/first/thumb.jpg']);
    expect((await filesUnder(out)).map((f) => path.relative(out, f)).sort()).toEqual(['gallery/first/thumb.jpg', 'orders/o1/f1/original.jpg']);
    expect(report).toEqual({ blobs: 2, bytes: 9, vanished: 1, skipped: 0, missing: 0 });
  });
});
