/**
 * DELETE /users/me while one of the account's uploads is still arriving.
 * The upload was past its checks (credentials, project) when the delete
 * began; it must not store anything for an account that is gone. The test
 * holds the upload's last bytes back until the delete has answered, so the
 * upload commits after the account row is deleted: 401 `account_deleted`,
 * no row and no file left, on SQLite and PostgreSQL. An upload that
 * commits while the clean-ups run, before the row goes, is removed by their
 * second pass.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesUnder, uploadStaging } from '../../helpers/files.js';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { RawConnection } from '../../helpers/raw-http.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { accountCleanups, type AccountCleanup } from '../../../src/modules/account-cleanup.js';
import { registerUser } from '../../helpers/users.js';
import { initiateProcess } from '../../../src/modules/ai-edits/service.js';

const dialects = [{ name: 'SQLite', postgres: false }, ...(hasPostgres ? [{ name: 'PostgreSQL', postgres: true }] : [])];
const PHOTO = fixture('rocket_small_640x427.jpg');
const BOUNDARY = 'kilnrace';
const HELD_BACK = 64;

/** A multipart body of one photo in `field`, as a browser frames it. */
function multipart(field: string): Buffer {
  return Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${field}"; filename="rocket.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
    PHOTO,
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}

describe.each(dialects)('an upload still arriving when its account is deleted ($name)', ({ postgres }) => {
  let server: TestServer;
  let drop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const env: Record<string, string> = { RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0' };
    if (postgres) {
      const db = await createTestDatabase();
      env.DATABASE_URL = db.url;
      drop = db.drop;
    }
    server = await startServer(env);
  });
  afterAll(async () => {
    await server.close();
    await drop?.();
  });

  it.each([
    ['a gallery upload', '/projects/race/images', 'file'],
    ['a custom order', '/api/images/upload', 'files'],
    ['an AI-edit upload', '/api/v1/upload', 'file'],
  ])('%s is refused 401 account_deleted and leaves nothing', async (_what, route, field) => {
    const user = await registerUser(server.url, `racer${route.length}`);
    const body = multipart(field);
    const conn = await RawConnection.open(server.url);
    try {
      const head = [`POST ${route} HTTP/1.1`, 'Host: kiln.test', user.headers.authorization && `Authorization: ${user.headers.authorization}`];
      conn.send(`${[...head, `Content-Type: multipart/form-data; boundary=${BOUNDARY}`, `Content-Length: ${body.length}`].join('\r\n')}\r\n\r\n`);
      conn.send(body.subarray(0, body.length - HELD_BACK));
      await uploadStaging(server.dataDir);

      expect((await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: user.headers })).status).toBe(204);
      conn.send(body.subarray(body.length - HELD_BACK));
      const [answer] = await conn.answers(1);
      expect(answer?.status, answer?.body.toString()).toBe(401);
      expect(answer?.body.toString()).toContain('account_deleted');
    } finally {
      conn.destroy();
    }

    const db = server.ctx.db.kysely;
    expect(await db.selectFrom('projects').select('project_id').where('owner_id', '=', user.id).execute()).toEqual([]);
    expect(await db.selectFrom('custom_orders').select('order_id').where('user_id', '=', user.id).execute()).toEqual([]);
    expect(await db.selectFrom('ai_files').select('file_id').where('owner_id', '=', user.id).execute()).toEqual([]);
    expect(await filesUnder(path.join(server.dataDir, 'blobs'))).toEqual([]);
    expect(await readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it('logins and refreshes racing the delete answer 200 or 401, never 500, and leave no session of the account', async () => {
    const user = await registerUser(server.url, 'leaving');
    const post = (route: string, body: unknown) => fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const sessions = await Promise.all([1, 2, 3, 4].map(async () => ((await (await post('/auth/login', { email: user.email, password: user.password })).json()) as { refresh_token: string }).refresh_token));
    // Each login reads the account at once, then spends its password check on the thread pool: most store their session after the delete.
    const racing = [
      ...Array.from({ length: 12 }, () => post('/auth/login', { email: user.email, password: user.password })),
      ...sessions.map((refresh_token) => post('/auth/refresh', { refresh_token })),
    ];
    expect((await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: user.headers })).status).toBe(204);
    const answers = await Promise.all(racing);
    const statuses = answers.map((res) => res.status);
    // Which of them win depends on the timing (on PostgreSQL the delete may wait for them all); none fails.
    expect(statuses.filter((status) => status !== 200 && status !== 401), statuses.join(' ')).toEqual([]);
    const db = server.ctx.db.kysely;
    expect(await db.selectFrom('refresh_tokens').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
  });

  it('an AI-edit process initiated for an account deleted meanwhile is refused and not stored', async () => {
    const user = await registerUser(server.url, 'initiator');
    // The request's credentials were checked before the delete; its process is stored after it.
    expect((await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: user.headers })).status).toBe(204);
    await expect(initiateProcess(server.ctx, { userId: user.id, isAdmin: false, via: 'jwt' })).rejects.toMatchObject({ status: 401, code: 'account_deleted' });
    const db = server.ctx.db.kysely;
    expect(await db.selectFrom('ai_processes').select('init_id').where('owner_id', '=', user.id).execute()).toEqual([]);
  });

  it('an upload that commits while the first clean-up runs is removed by the second', async () => {
    const user = await registerUser(server.url, 'midway');
    let uploaded: string | undefined;
    // The last clean-up of the first pass: the account still exists, so this upload commits.
    const uploadMidway: AccountCleanup = async () => {
      if (uploaded) return;
      const res = await postMultipart(`${server.url}/projects/midway/images`, [{ field: 'file', filename: 'rocket.jpg', data: PHOTO, type: 'image/jpeg' }], user.headers);
      expect(res.status).toBe(201);
      uploaded = ((await res.json()) as { image_id: string }).image_id;
    };
    accountCleanups.push(uploadMidway);
    try {
      expect((await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: user.headers })).status).toBe(204);
    } finally {
      accountCleanups.splice(accountCleanups.indexOf(uploadMidway), 1);
    }
    expect(uploaded).toBeDefined();
    const db = server.ctx.db.kysely;
    expect(await db.selectFrom('gallery_images').select('image_id').where('image_id', '=', uploaded ?? '').execute()).toEqual([]);
    expect(await db.selectFrom('projects').select('project_id').where('project_id', '=', 'midway').execute()).toEqual([]);
    expect(await filesUnder(path.join(server.dataDir, 'blobs', 'gallery', uploaded ?? ''))).toEqual([]);
  });
});
