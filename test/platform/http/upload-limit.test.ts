/**
 * MAX_UPLOAD_SIZE is the bytes of one file (spec/README.md: "bytes per
 * file"), as a client sends it over HTTP: a file of exactly the limit is
 * taken, one byte more is 413 and nothing of it is kept. Checked through the
 * whole request path (the multipart plugin's own limit included), not only
 * the staging's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectProblem } from '../../helpers/problem.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

const ROCKET = fixture('rocket_small_640x427.jpg');
/** The same JPEG with one byte after its end: one byte over a limit of ROCKET.length. */
const ONE_BYTE_MORE = Buffer.concat([ROCKET, Buffer.from([0])]);

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer({ MAX_UPLOAD_SIZE: String(ROCKET.length) });
  user = await registerUser(server.url);
});
afterAll(async () => server.close());

const send = (route: string, data: Buffer) => postMultipart(`${server.url}${route}`, [{ field: 'file', filename: 'photo.jpg', data, type: 'image/jpeg' }], user.headers);

describe('MAX_UPLOAD_SIZE over HTTP', () => {
  it('takes a gallery image of exactly MAX_UPLOAD_SIZE bytes; one byte more is 413 file_too_large and makes no project', async () => {
    const exact = await send(`/projects/${user.username}-exact/images`, ROCKET);
    expect(exact.status, await exact.clone().text()).toBe(201);
    expect(await exact.json()).toMatchObject({ project_id: `${user.username}-exact`, width: 640, height: 427 });

    await expectProblem(await send(`/projects/${user.username}-over/images`, ONE_BYTE_MORE), 413, 'file_too_large');
    expect((await fetch(`${server.url}/projects/${user.username}-over/images`, { headers: user.headers })).status).toBe(404);
  });

  it('takes an AI-edit upload of exactly MAX_UPLOAD_SIZE bytes; one byte more is 413', async () => {
    expect((await send('/api/v1/upload', ROCKET)).status).toBe(201);
    const over = await send('/api/v1/upload', ONE_BYTE_MORE);
    expect(over.status).toBe(413);
    expect(await over.json()).toMatchObject({ success: false, data: { error: 'file_too_large' } });
  });
});
