/**
 * DELETE /users/me takes the user's galleries with it: projects, image rows
 * and every variant file. Another user's project is untouched, and the
 * deleted user's project_id is free to be taken again.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesUnder } from '../../helpers/files.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.close());

const photo = fixture('rocket_small_640x427.jpg');

async function upload(user: TestUser, projectId: string): Promise<string> {
  const res = await postMultipart(`${server.url}/projects/${projectId}/images`, [{ field: 'file', filename: 'rocket.jpg', data: photo, type: 'image/jpeg' }], user.headers);
  expect(res.status).toBe(201);
  return ((await res.json()) as { image_id: string }).image_id;
}

const variantFiles = (imageId: string): Promise<string[]> => filesUnder(path.join(server.dataDir, 'blobs', 'gallery', imageId));

describe('deleting an account', () => {
  it('removes its projects, images and variant files, and nobody else\'s', async () => {
    const leaving = await registerUser(server.url, 'leaving');
    const staying = await registerUser(server.url, 'staying');
    const gone = [await upload(leaving, 'garden'), await upload(leaving, 'garden'), await upload(leaving, 'kitchen')];
    const kept = await upload(staying, 'attic');
    for (const id of [...gone, kept]) expect(await variantFiles(id)).toHaveLength(4);

    const res = await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: leaving.headers });
    expect(res.status).toBe(204);

    const db = server.ctx.db.kysely;
    expect(await db.selectFrom('projects').select('project_id').where('project_id', 'in', ['garden', 'kitchen']).execute()).toEqual([]);
    expect(await db.selectFrom('gallery_images').select('image_id').where('image_id', 'in', gone).execute()).toEqual([]);
    for (const id of gone) expect(await variantFiles(id)).toEqual([]);
    expect((await fetch(`${server.url}/projects/garden/images`)).status).toBe(404);

    expect(await variantFiles(kept)).toHaveLength(4);
    expect((await fetch(`${server.url}/projects/attic/images/${kept}?size=thumb`)).status).toBe(200);

    // The project_id is free again: a newcomer's first upload makes it theirs.
    const newcomer = await registerUser(server.url, 'newcomer');
    await upload(newcomer, 'garden');
    const list = (await (await fetch(`${server.url}/projects/garden/images`)).json()) as { images: unknown[] };
    expect(list.images).toHaveLength(1);
  });

  it('stops its images at once, revalidations and HEADs included, though they were just served', async () => {
    const leaving = await registerUser(server.url, 'leaving2');
    const id = await upload(leaving, 'porch');
    const url = `${server.url}/projects/porch/images/${id}?size=thumb`;
    const served = await fetch(url);
    expect(served.status).toBe(200);
    const etag = served.headers.get('etag') ?? '';
    expect((await fetch(url, { headers: { 'if-none-match': etag } })).status).toBe(304);

    expect((await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: leaving.headers })).status).toBe(204);
    expect((await fetch(url, { headers: { 'if-none-match': etag } })).status).toBe(404);
    expect((await fetch(url, { method: 'HEAD' })).status).toBe(404);
    expect((await fetch(url)).status).toBe(404);
  });
});
