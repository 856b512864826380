/**
 * MAX_IMAGE_PIXELS is Kiln's own bound, not sharp's (which refuses only
 * above 268 megapixels): an image declaring more pixels than the setting is
 * 413 image_too_large, from its header alone, and nothing is stored.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { filesUnder } from '../helpers/files.js';
import { pngBomb } from '../helpers/png.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { fixture, postMultipart } from '../helpers/upload.js';
import { registerUser } from '../helpers/users.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function uploadTo(env: Record<string, string>, data: Buffer, filename: string): Promise<{ server: TestServer; res: Response }> {
  const server = await startServer(env);
  servers.push(server);
  const user = await registerUser(server.url, 'pixels');
  const res = await postMultipart(`${server.url}/projects/limits/images`, [{ field: 'file', filename, data }], user.headers);
  return { server, res };
}

async function storedImages(server: TestServer): Promise<number> {
  const rows = await server.ctx.db.kysely.selectFrom('gallery_images').select('image_id').execute();
  return rows.length + (await filesUnder(path.join(server.dataDir, 'blobs'))).length;
}

describe('MAX_IMAGE_PIXELS', () => {
  it('at its default of 50 MP refuses a 100 MP PNG that sharp alone would decode', async () => {
    const { server, res } = await uploadTo({}, pngBomb(10_000, 10_000), 'big.png');
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('image_too_large');
    expect(await storedImages(server)).toBe(0);
  });

  it('set to 1 MP refuses the 4 MP photo and takes the 0.3 MP one', async () => {
    const small = await uploadTo({ MAX_IMAGE_PIXELS: '1000000' }, fixture('path_2560x1600_olympus_exif.jpg'), 'path.jpg');
    expect(small.res.status).toBe(413);
    expect(((await small.res.json()) as { code: string }).code).toBe('image_too_large');
    expect(await storedImages(small.server)).toBe(0);

    const ok = await uploadTo({ MAX_IMAGE_PIXELS: '1000000' }, fixture('rocket_small_640x427.jpg'), 'rocket.jpg');
    expect(ok.res.status).toBe(201);
  });
});
