import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture } from '../../helpers/upload.js';
import { createOrder, filePart, PATH_JPG, ROCKET_JPG, type OrderBody } from './helpers.js';

let server: TestServer;
let user: TestUser;
let order: OrderBody;

beforeAll(async () => {
  server = await startServer();
  user = await registerUser(server.url, 'quality');
  const resized = await sharp(PATH_JPG).resize({ width: 1200 }).jpeg({ quality: 80 }).toBuffer();
  const blurred = await sharp(PATH_JPG).blur(15).jpeg({ quality: 90 }).toBuffer();
  order = await createOrder(server.url, user.headers, [
    filePart(PATH_JPG, 'sharp.jpg'),
    filePart(resized, 'resized.jpg'),
    filePart(fixture('orient_1.jpg'), 'other.jpg'),
    filePart(blurred, 'blurred.jpg'),
  ]);
});
afterAll(async () => server?.close());

function file(name: string): OrderBody['files'][number] {
  const found = order.files.find((f) => f.original_filename === name);
  if (!found) throw new Error(`no file ${name}`);
  return found;
}

describe('quality facts of each photo, from the image itself', () => {
  it('a sharp photo is not blurry; the same photo blurred is', () => {
    expect(file('sharp.jpg').quality).toMatchObject({ blurry: false, too_small: false, width: 2560, height: 1600, duplicate_of: null });
    expect(file('blurred.jpg').quality.blurry).toBe(true);
  });

  it('a resized copy is a duplicate of the earlier photo; a different photo is not', () => {
    expect(file('resized.jpg').quality.duplicate_of).toBe(file('sharp.jpg').file_id);
    expect(file('other.jpg').quality.duplicate_of).toBeNull();
    expect(file('other.jpg').quality.blurry).toBe(false);
  });

  it('under 800 pixels on the short side is too small, measured as displayed', async () => {
    expect(file('resized.jpg').quality).toMatchObject({ width: 1200, height: 750, too_small: true });
    expect(file('other.jpg').quality).toMatchObject({ width: 1200, height: 1802, too_small: false });
    const small = await createOrder(server.url, user.headers, [filePart(ROCKET_JPG)]);
    expect(small.files[0]?.quality).toMatchObject({ width: 640, height: 427, too_small: true, duplicate_of: null });
  });

  it('exactly 800 pixels on the short side is not too small; 799 is', async () => {
    const at = async (height: number) => sharp(PATH_JPG).resize({ height }).jpeg({ quality: 90 }).toBuffer();
    const edge = await createOrder(server.url, user.headers, [filePart(await at(800), 'edge.jpg'), filePart(await at(799), 'under.jpg')]);
    expect(edge.files.map((f) => [f.quality.height, f.quality.too_small])).toEqual([
      [800, false],
      [799, true],
    ]);
  });

  it('duplicates are looked for within the order only; they never reject', async () => {
    const again = await createOrder(server.url, user.headers, [filePart(PATH_JPG)]);
    expect(again.files[0]?.quality.duplicate_of).toBeNull();
    const twice = await createOrder(server.url, user.headers, [filePart(ROCKET_JPG, 'a.jpg'), filePart(ROCKET_JPG, 'b.jpg')]);
    expect(twice.files[1]?.quality.duplicate_of).toBe(twice.files[0]?.file_id);
  });

  it('the facts are kept: reading the order again gives the same', async () => {
    const res = await fetch(`${server.url}/api/images/orders/${order.order_id}`, { headers: user.headers });
    const read = ((await res.json()) as { order: OrderBody }).order;
    expect(read.files.map((f) => f.quality)).toEqual(order.files.map((f) => f.quality));
  });
});
