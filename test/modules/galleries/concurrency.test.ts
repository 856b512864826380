import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../../helpers/config.js';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { startKiln, type KilnProcess } from '../../helpers/process.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { filesUnder } from '../../helpers/files.js';

const ROCKET = fixture('rocket_small_640x427.jpg');

interface Listing {
  primary_image_id: string | null;
  images: Array<{ image_id: string; is_primary: boolean }>;
}

/** Exactly one primary while images remain, none when empty, and it is one of the images. */
function expectOnePrimary(listing: Listing): void {
  const primaries = listing.images.filter((i) => i.is_primary);
  if (listing.images.length === 0) {
    expect(listing.primary_image_id).toBeNull();
    expect(primaries).toHaveLength(0);
  } else {
    expect(primaries).toHaveLength(1);
    expect(primaries[0]?.image_id).toBe(listing.primary_image_id);
  }
}

function twoServerSuite(name: string, databaseUrl: () => Promise<{ url?: string; drop: () => Promise<void> }>, skip = false): void {
  describe.skipIf(skip)(`two kiln serve processes on ${name}`, () => {
    let a: KilnProcess;
    let b: KilnProcess;
    let user: TestUser;
    let drop: () => Promise<void>;
    // Made in beforeAll: a skipped suite's body still runs, and its afterAll would not remove it.
    let data: ReturnType<typeof tempDataDir>;

    beforeAll(async () => {
      data = tempDataDir();
      const db = await databaseUrl();
      drop = db.drop;
      const env = { DATA_DIR: data.dir, JWT_SECRET: 'shared-secret-for-both-processes', ...(db.url ? { DATABASE_URL: db.url } : {}) };
      // Start one first so migrations run once, then the second.
      a = await startKiln(env);
      b = await startKiln(env);
      user = await registerUser(a.url, 'racer');
    }, 60_000);

    afterAll(async () => {
      await a?.stop();
      await b?.stop();
      await drop?.();
      data?.cleanup();
    });

    const servers = () => [a, b];
    const upload = (i: number) =>
      postMultipart(`${servers()[i % 2]?.url}/projects/race/images`, [{ field: 'file', filename: `p${i}.jpg`, data: ROCKET }], user.headers);
    const list = async (i: number) => (await (await fetch(`${servers()[i % 2]?.url}/projects/race/images`)).json()) as Listing;

    it('16 parallel uploads spread across both: exactly 16 images, exactly one primary', async () => {
      const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => upload(i)));
      expect(answers.map((r) => r.status)).toEqual(Array(16).fill(201));
      const bodies = (await Promise.all(answers.map((r) => r.json()))) as Array<{ is_primary: boolean }>;
      expect(bodies.filter((x) => x.is_primary)).toHaveLength(1);
      for (const i of [0, 1]) {
        const listing = await list(i);
        expect(listing.images).toHaveLength(16);
        expect(new Set(listing.images.map((x) => x.image_id)).size).toBe(16);
        expectOnePrimary(listing);
      }
    }, 60_000);

    it('interleaved parallel deletes and uploads: always exactly one primary while images remain', async () => {
      const before = await list(0);
      const victims = before.images.slice(0, 12).map((x) => x.image_id);
      const snapshots: Listing[] = [];
      let running = true;
      const watcher = (async () => {
        let i = 0;
        while (running) snapshots.push(await list(i++));
      })();
      const ops = [
        ...victims.map((id, i) => fetch(`${servers()[i % 2]?.url}/projects/race/images/${id}`, { method: 'DELETE', headers: user.headers })),
        ...Array.from({ length: 8 }, (_, i) => upload(i)),
      ];
      const results = await Promise.all(ops);
      running = false;
      await watcher;
      expect(results.slice(0, 12).map((r) => r.status)).toEqual(Array(12).fill(204));
      expect(results.slice(12).map((r) => r.status)).toEqual(Array(8).fill(201));
      expect(snapshots.length).toBeGreaterThan(0);
      snapshots.forEach(expectOnePrimary);
      const after = await list(1);
      expect(after.images).toHaveLength(16 - 12 + 8);
      expectOnePrimary(after);

      // Delete everything left, from both sides at once: none remains, no primary.
      await Promise.all(after.images.map((x, i) => fetch(`${servers()[i % 2]?.url}/projects/race/images/${x.image_id}`, { method: 'DELETE', headers: user.headers })));
      const empty = await list(0);
      expect(empty.images).toEqual([]);
      expectOnePrimary(empty);
    }, 60_000);
  });
}

twoServerSuite('one SQLite file (same DATA_DIR)', async () => ({ drop: async () => undefined }));
twoServerSuite('one PostgreSQL database', async () => createTestDatabase(), !hasPostgres);

function claimRaceSuite(name: string, databaseUrl: () => Promise<{ url?: string; drop: () => Promise<void> }>, skip = false): void {
  describe.skipIf(skip)(`two users racing for one free project_id on ${name}`, () => {
    let server: TestServer;
    let drop: () => Promise<void>;
    let users: TestUser[];

    beforeAll(async () => {
      const db = await databaseUrl();
      drop = db.drop;
      server = await startServer(db.url ? { DATABASE_URL: db.url } : {});
      users = [await registerUser(server.url, 'claimer1'), await registerUser(server.url, 'claimer2')];
    }, 60_000);

    afterAll(async () => {
      await server?.close();
      await drop();
    });

    it('exactly one owns it; every upload of the other is 404 and leaves no blob', async () => {
      const blobDir = path.join(server.dataDir, 'blobs');
      const before = await filesUnder(blobDir);
      const PER_USER = 4;
      // Interleaved, all at once: both pass the early ownership check and meet at the claim.
      const answers = await Promise.all(
        Array.from({ length: PER_USER * 2 }, (_, i) =>
          postMultipart(`${server.url}/projects/contested/images`, [{ field: 'file', filename: `c${i}.jpg`, data: ROCKET }], (users[i % 2] as TestUser).headers),
        ),
      );
      const statuses = [0, 1].map((u) => answers.filter((_, i) => i % 2 === u).map((r) => r.status));
      await Promise.all(answers.map((r) => r.arrayBuffer()));
      const winner = statuses[0]?.[0] === 201 ? 0 : 1;
      const loser = 1 - winner;
      expect(statuses[winner]).toEqual(Array(PER_USER).fill(201));
      expect(statuses[loser]).toEqual(Array(PER_USER).fill(404));

      const project = await server.ctx.db.kysely.selectFrom('projects').select('owner_id').where('project_id', '=', 'contested').executeTakeFirstOrThrow();
      expect(project.owner_id).toBe(users[winner]?.id);
      const listing = (await (await fetch(`${server.url}/projects/contested/images`)).json()) as Listing;
      expect(listing.images).toHaveLength(PER_USER);
      expectOnePrimary(listing);
      expect((await postMultipart(`${server.url}/projects/contested/images`, [{ field: 'file', filename: 'late.jpg', data: ROCKET }], (users[loser] as TestUser).headers)).status).toBe(404);

      // Four sizes per image of the winner, and not one file more: the loser's were removed.
      const after = await filesUnder(blobDir);
      expect(after.length - before.length).toBe(PER_USER * 4);
      const kept = new Set(listing.images.map((x) => x.image_id));
      expect(after.filter((f) => !before.includes(f) && !kept.has(path.basename(path.dirname(f))))).toEqual([]);
      expect(await filesUnder(path.join(server.dataDir, 'tmp'))).toEqual([]);
    }, 60_000);
  });
}

claimRaceSuite('SQLite', async () => ({ drop: async () => undefined }));
claimRaceSuite('PostgreSQL', async () => createTestDatabase(), !hasPostgres);
