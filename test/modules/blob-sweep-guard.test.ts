// The sweep's guard: a database that knows none (or too few) of the stored blobs is not the store's, and a
// sweep against it would remove every image. It is refused, removing nothing, unless --force says otherwise.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext, type Context } from '../../src/context.js';
import { GUARD_MIN_ORPHANS, refusal, SweepRefused, sweepOrphanBlobs } from '../../src/modules/blob-sweep.js';
import { blobKey as galleryKey } from '../../src/modules/galleries/images.js';
import { migrateToLatest, openDatabase } from '../../src/platform/db/index.js';
import { tempDataDir, testConfig } from '../helpers/config.js';
import { MAIN } from '../helpers/process.js';

const run = promisify(execFile);
const newId = () => randomBytes(8).toString('hex');
const HOUR = 60 * 60 * 1000;
/** As a cron run an hour and more after the blobs were written sees them. */
const later = () => ({ olderThanMs: HOUR, now: Date.now() + 2 * HOUR });

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function dataDir(): string {
  const dir = tempDataDir();
  cleanups.push(dir.cleanup);
  return dir.dir;
}

async function open(dir: string, env: Record<string, string> = {}): Promise<Context> {
  const ctx = await createContext(testConfig(dir, env));
  cleanups.push(() => ctx.close());
  return ctx;
}

/** Gallery images with their rows and a blob each, and `orphans` blobs whose rows are gone: the keys of both. */
async function deployment(ctx: Context, live: number, orphans: number): Promise<{ live: string[]; orphans: string[] }> {
  const now = new Date().toISOString();
  const projectId = newId();
  await ctx.db.kysely.insertInto('projects').values({ project_id: projectId, owner_id: 'u', primary_image_id: null, next_seq: live + 1, created_at: now, updated_at: now }).execute();
  const keys = { live: [] as string[], orphans: [] as string[] };
  for (let seq = 1; seq <= live; seq++) {
    const imageId = newId();
    await ctx.db.kysely.insertInto('gallery_images').values({ image_id: imageId, project_id: projectId, seq, width: 1, height: 1, bytes: 1, sha256: 'x', variants: '{}', created_at: now }).execute();
    keys.live.push(galleryKey(imageId, 'thumb'));
  }
  for (let i = 0; i < orphans; i++) keys.orphans.push(galleryKey(newId(), 'thumb'));
  for (const key of [...keys.live, ...keys.orphans]) await ctx.blobs.put(key, Buffer.from('image'), 'image/jpeg');
  return keys;
}

const prefixOf = (key: string) => key.slice(0, key.lastIndexOf('/'));

/** A migrated SQLite database of a deployment that has stored nothing: a database, but not the store's. */
async function emptyDatabase(name: string): Promise<string> {
  const file = path.join(dataDir(), name);
  const db = openDatabase(`sqlite:${file}`, path.dirname(file));
  await migrateToLatest(db);
  await db.close();
  return file;
}

async function present(ctx: Context, keys: string[]): Promise<boolean[]> {
  return Promise.all(keys.map(async (key) => (await ctx.blobs.stat(key)) !== null));
}

describe('refusal', () => {
  it('lets through a sweep with nothing to remove, or a few orphans among live groups', () => {
    expect(refusal({ groups: 0, known: 0, orphans: 0 })).toBeNull();
    expect(refusal({ groups: 5, known: 0, orphans: 0 })).toBeNull();
    expect(refusal({ groups: 100, known: 98, orphans: 2 })).toBeNull();
    // Half is not more than half.
    expect(refusal({ groups: 20, known: 10, orphans: 10 })).toBeNull();
    // A small store: a majority, but fewer than the minimum.
    expect(refusal({ groups: GUARD_MIN_ORPHANS, known: 1, orphans: GUARD_MIN_ORPHANS - 1 })).toBeNull();
  });

  it('refuses when the database knows none of the groups, however few', () => {
    expect(refusal({ groups: 1, known: 0, orphans: 1 })).toBe('the database knows none of these 1 stored images, and the sweep would remove all of them');
    expect(refusal({ groups: 3, known: 0, orphans: 2 })).toBe('the database knows none of these 3 stored images, and the sweep would remove 2 of them');
  });

  it('refuses when more than half would go, from the minimum on', () => {
    expect(refusal({ groups: 9, known: 4, orphans: GUARD_MIN_ORPHANS })).toBe('the database knows only 4 of these 9 stored images, and the sweep would remove 5 of them (more than 50%)');
    expect(refusal({ groups: 1000, known: 3, orphans: 997 })).toMatch(/^the database knows only 3 of these 1000 stored images/);
  });
});

describe('sweepOrphanBlobs with the guard', () => {
  it('removes a few orphans among many live groups as before', async () => {
    const ctx = await open(dataDir());
    const keys = await deployment(ctx, 12, 2);
    const report = await sweepOrphanBlobs(ctx, later());
    expect(report.orphans.sort()).toEqual(keys.orphans.map(prefixOf).sort());
    expect(await present(ctx, keys.orphans)).toEqual([false, false]);
    expect(await present(ctx, keys.live)).toEqual(keys.live.map(() => true));
  });

  it('refuses the same store against a new database, removes nothing, and says why', async () => {
    const dir = dataDir();
    const keys = await deployment(await open(dir), 12, 2);
    // The store's DATA_DIR, another (new, empty) database: cron without the deployment's DATABASE_URL.
    const stranger = await open(dir, { DATABASE_URL: `sqlite:${path.join(dataDir(), 'new.db')}` });
    const err = await sweepOrphanBlobs(stranger, later()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SweepRefused);
    expect((err as SweepRefused).message).toMatch(/^refusing to sweep: the database knows none of these 14 stored images, and the sweep would remove all of them\. Is DATABASE_URL \/ DATA_DIR the deployment's\?/);
    expect((err as SweepRefused).message).toContain('Nothing was removed; --force sweeps all the same.');
    expect((err as SweepRefused).report.orphans).toHaveLength(14);
    expect(await present(stranger, [...keys.live, ...keys.orphans])).toEqual(Array(14).fill(true));
  });

  it('removes no empty directory either when it refuses, though a sweep let through would', async () => {
    const dir = dataDir();
    const keys = await deployment(await open(dir), 3, 0);
    // What an upload that died before its first file leaves: old enough for any sweep of `later()`.
    const empty = path.join(dir, 'blobs', 'gallery', newId());
    mkdirSync(empty);
    const stranger = await open(dir, { DATABASE_URL: `sqlite:${path.join(dataDir(), 'new.db')}` });
    for (const dryRun of [false, true]) {
      await expect(sweepOrphanBlobs(stranger, { ...later(), dryRun })).rejects.toBeInstanceOf(SweepRefused);
      expect(existsSync(empty)).toBe(true);
    }
    expect(await present(stranger, keys.live)).toEqual([true, true, true]);
    // The deployment's own database lets the sweep through, and it takes the directory.
    const own = await open(dir);
    expect((await sweepOrphanBlobs(own, later())).emptyDirectories).toEqual([path.relative(path.join(dir, 'blobs'), empty)]);
    expect(existsSync(empty)).toBe(false);
  });

  it('refuses a database a reset emptied, once a few new images have rows in it', async () => {
    const dir = dataDir();
    const old = await deployment(await open(dir), 12, 0);
    const reset = await open(dir, { DATABASE_URL: `sqlite:${path.join(dataDir(), 'new.db')}` });
    const uploadedSince = await deployment(reset, 2, 0);
    const err = await sweepOrphanBlobs(reset, later()).catch((e: unknown) => e);
    expect((err as SweepRefused).message).toMatch(/^refusing to sweep: the database knows only 2 of these 14 stored images, and the sweep would remove 12 of them \(more than 50%\)/);
    expect(await present(reset, [...old.live, ...uploadedSince.live])).toEqual(Array(14).fill(true));
  });

  it('on a dry run, reports the same refusal', async () => {
    const dir = dataDir();
    const keys = await deployment(await open(dir), 3, 0);
    const stranger = await open(dir, { DATABASE_URL: `sqlite:${path.join(dataDir(), 'new.db')}` });
    const err = await sweepOrphanBlobs(stranger, { ...later(), dryRun: true }).catch((e: unknown) => e);
    expect((err as SweepRefused).message).toMatch(/^a sweep would refuse: the database knows none of these 3 stored images/);
    expect((err as SweepRefused).message).toContain('Nothing would be removed; with --force the sweep would remove them.');
    expect(await present(stranger, keys.live)).toEqual([true, true, true]);
  });

  it('sweeps all the same with force', async () => {
    const dir = dataDir();
    const keys = await deployment(await open(dir), 3, 0);
    const stranger = await open(dir, { DATABASE_URL: `sqlite:${path.join(dataDir(), 'new.db')}` });
    await expect(sweepOrphanBlobs(stranger, later())).rejects.toBeInstanceOf(SweepRefused);
    const report = await sweepOrphanBlobs(stranger, { ...later(), force: true });
    expect(report.orphans).toHaveLength(3);
    expect(await present(stranger, keys.live)).toEqual([false, false, false]);
  });

  it('does not count a health probe a crash left: no row ever owns one, whatever the database', async () => {
    const ctx = await open(dataDir());
    const probe = () => `health/${newId()}/probe`;
    // A store that holds nothing else: the probe goes, as it always did.
    const alone = probe();
    await ctx.blobs.put(alone, Buffer.from('probe'), 'text/plain');
    expect((await sweepOrphanBlobs(ctx, later())).orphans).toEqual([prefixOf(alone)]);
    expect(await ctx.blobs.stat(alone)).toBeNull();
    // Beside images the database does not know, the refusal counts the images only.
    await ctx.blobs.put(probe(), Buffer.from('probe'), 'text/plain');
    await deployment(ctx, 0, 3);
    await expect(sweepOrphanBlobs(ctx, later())).rejects.toThrow(/^refusing to sweep: the database knows none of these 3 stored images, and the sweep would remove all of them\./);
  });
});

// Needs `npm run build`: these run the built command, as cron does.
describe('kiln blobs sweep with the guard', () => {
  /** A deployment's DATA_DIR whose blobs were written two hours ago, and its database closed, as a server left it. */
  async function store(live: number, orphans: number): Promise<{ dir: string; keys: { live: string[]; orphans: string[] }; file: (key: string) => string }> {
    const dir = dataDir();
    const ctx = await createContext(testConfig(dir));
    const keys = await deployment(ctx, live, orphans);
    await ctx.close();
    const file = (key: string) => path.join(dir, 'blobs', key);
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR);
    for (const key of [...keys.live, ...keys.orphans]) utimesSync(file(key), twoHoursAgo, twoHoursAgo);
    return { dir, keys, file };
  }

  const kiln = (args: string[], env: Record<string, string>) => run(process.execPath, [MAIN, 'blobs', 'sweep', ...args], { env: { ...process.env, LOG_LEVEL: 'silent', ...env } });
  const failure = (args: string[], env: Record<string, string>) => kiln(args, env).then(
    () => null,
    (e: unknown) => e as { code: number; stdout: string; stderr: string },
  );

  it('sweeps the orphans against the deployment\'s own database as before', async () => {
    const { dir, keys, file } = await store(12, 2);
    const { stdout } = await kiln([], { DATA_DIR: dir });
    expect(JSON.parse(stdout.trim().split('\n').pop() as string)).toEqual({ dry_run: false, groups: 14, orphans: 2, too_recent: 0, empty_directories: 0 });
    for (const key of keys.orphans) expect(existsSync(file(key))).toBe(false);
    for (const key of keys.live) expect(existsSync(file(key))).toBe(true);
  });

  it("refuses, exit 1, in a DATA_DIR without its database (a PostgreSQL deployment's, from cron without DATABASE_URL; kiln.db deleted), makes none there, and removes nothing", async () => {
    const { dir, keys, file } = await store(3, 0);
    // What a PostgreSQL deployment's DATA_DIR holds, or a SQLite one's once kiln.db is gone: blobs, no kiln.db.
    for (const name of ['kiln.db', 'kiln.db-wal', 'kiln.db-shm']) rmSync(path.join(dir, name), { force: true });
    for (const args of [[], ['--dry-run'], ['--force']]) {
      const err = await failure(args, { DATA_DIR: dir });
      expect(err?.code).toBe(1);
      expect(err?.stdout).toBe('');
      expect(err?.stderr).toContain(`kiln: there is no database at ${path.join(dir, 'kiln.db')}: a sweep needs the deployment's (set DATA_DIR, or DATABASE_URL when it is PostgreSQL); nothing was removed`);
      // Not made new: the next start would take an empty database for the deployment's.
      expect(existsSync(path.join(dir, 'kiln.db'))).toBe(false);
    }
    for (const key of keys.live) expect(existsSync(file(key))).toBe(true);
  });

  it('refuses, exit 1, with a DATABASE_URL that is not the deployment\'s', async () => {
    const { dir, keys, file } = await store(3, 0);
    const elsewhere = await emptyDatabase('other.db');
    const err = await failure([], { DATA_DIR: dir, DATABASE_URL: `sqlite:${elsewhere}` });
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain("kiln: refusing to sweep: the database knows none of these 3 stored images, and the sweep would remove all of them. Is DATABASE_URL / DATA_DIR the deployment's?");
    expect(err?.stderr).toContain(`This run used SQLite from DATABASE_URL sqlite:${elsewhere}, with blobs in ${path.join(dir, 'blobs')}.`);
    expect(err?.stderr).toContain('Nothing was removed; --force sweeps all the same.');
    for (const key of keys.live) expect(existsSync(file(key))).toBe(true);
  });

  it('says on a dry run that a sweep would refuse, exit 1, and lists nothing', async () => {
    const { dir, keys, file } = await store(3, 0);
    const err = await failure(['--dry-run'], { DATA_DIR: dir, DATABASE_URL: `sqlite:${await emptyDatabase('kiln.db')}` });
    expect(err?.code).toBe(1);
    expect(err?.stdout).toBe('');
    expect(err?.stderr).toMatch(/^kiln: a sweep would refuse: the database knows none of these 3 stored images/);
    for (const key of keys.live) expect(existsSync(file(key))).toBe(true);
  });

  it('sweeps with --force (and lists what it would remove with --dry-run --force)', async () => {
    const { dir, keys, file } = await store(3, 0);
    const env = { DATA_DIR: dir, DATABASE_URL: `sqlite:${await emptyDatabase('kiln.db')}` };
    const dry = await kiln(['--dry-run', '--force'], env);
    for (const key of keys.live) expect(dry.stdout).toContain(`would remove ${prefixOf(key)}/\n`);
    for (const key of keys.live) expect(existsSync(file(key))).toBe(true);
    const done = await kiln(['--force'], env);
    expect(JSON.parse(done.stdout.trim().split('\n').pop() as string)).toMatchObject({ dry_run: false, groups: 3, orphans: 3 });
    for (const key of keys.live) expect(existsSync(file(key))).toBe(false);
  });
});
