import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { expectNothingStored, expectProblem, filePart, photo, pngBomb, ROCKET_JPG, upload, type Part } from './helpers.js';

let server: TestServer;
let user: TestUser;
let jpg: Buffer;

beforeAll(async () => {
  // Contract defaults: MAX_UPLOAD_SIZE 10 MiB, MAX_FILES_PER_ORDER 4.
  server = await startServer();
  user = await registerUser(server.url, 'mallory');
  jpg = await photo();
});
afterAll(async () => server?.close());

function send(parts: Part[]): Promise<Response> {
  return upload(server.url, user.headers, parts);
}

describe('a rejected upload stores nothing', () => {
  it('no files: 422', async () => {
    await expectProblem(await send([{ field: 'pet_name', data: 'Rex' }]), 422, 'no_files');
    await expectNothingStored(server);
  });

  it('five files when four are allowed: 422 too_many_files', async () => {
    await expectProblem(await send([1, 2, 3, 4, 5].map((i) => filePart(jpg, `p${i}.jpg`))), 422, 'too_many_files');
    await expectNothingStored(server);
  });

  it('a good photo and a text file: 415, the good photo is not kept', async () => {
    const text = Buffer.from('this is not a photo\n'.repeat(50));
    await expectProblem(await send([filePart(jpg), filePart(text, 'notes.jpg')]), 415);
    await expectNothingStored(server);
  });

  it('a text file first and a good photo after it: 415', async () => {
    await expectProblem(await send([filePart(Buffer.from('<svg></svg>'), 'x.png'), filePart(jpg)]), 415);
    await expectNothingStored(server);
  });

  it('a good photo and an 11 MB file: 413, the good photo is not kept', async () => {
    const big = Buffer.concat([jpg, Buffer.alloc(11 * 1024 * 1024 - jpg.length, 7)]);
    await expectProblem(await send([filePart(jpg), filePart(big, 'huge.jpg')]), 413, 'file_too_large');
    await expectNothingStored(server);
  });

  it('a PNG bomb among good photos: 413 image_too_large', async () => {
    const res = await send([filePart(jpg), filePart(pngBomb(20_000, 20_000), 'bomb.png', 'image/png'), filePart(jpg)]);
    await expectProblem(res, 413, 'image_too_large');
    await expectNothingStored(server);
  });

  it('an AVIF photo: 415 unsupported_image (custom orders take JPEG, PNG or WebP), the good photo is not kept', async () => {
    const avif = await sharp(ROCKET_JPG).avif({ effort: 0 }).toBuffer();
    await expectProblem(await send([filePart(jpg), filePart(avif, 'pet.avif', 'image/avif')]), 415, 'unsupported_image');
    await expectNothingStored(server);
    await expectProblem(await send([filePart(avif, 'pet.jpg')]), 415, 'unsupported_image');
    await expectNothingStored(server);
  });

  it('a HEIC file (by its ftyp brand): 415 unsupported_image before any decoder sees it', async () => {
    // sharp's prebuilt libvips cannot write HEIC: an ftyp box with the heic brand is what the sniffer reads.
    const ftyp = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic'), Buffer.alloc(4), Buffer.from('mif1heic')]);
    const heic = Buffer.concat([ftyp, Buffer.alloc(4096, 1)]);
    await expectProblem(await send([filePart(heic, 'IMG_0001.HEIC', 'image/heic'), filePart(jpg)]), 415, 'unsupported_image');
    await expectNothingStored(server);
  });

  it('an empty file: 415', async () => {
    await expectProblem(await send([filePart(jpg), filePart(Buffer.alloc(0), 'empty.jpg')]), 415);
    await expectNothingStored(server);
  });

  it('a truncated JPEG among good photos: 415', async () => {
    await expectProblem(await send([filePart(jpg), filePart(jpg.subarray(0, Math.floor(jpg.length / 2)), 'cut.jpg')]), 415);
    await expectNothingStored(server);
  });

  it('a photo in another field than `files`: 422', async () => {
    await expectProblem(await send([{ field: 'file', filename: 'a.jpg', data: jpg, type: 'image/jpeg' }]), 422);
    await expectNothingStored(server);
  });

  it.each([
    ['pet_name', 101],
    ['pet_type', 101],
    ['notes', 2001],
  ])('%s of %i characters: 422 naming the field', async (field, length) => {
    const body = await expectProblem(await send([filePart(jpg), { field, data: 'é'.repeat(length) }]), 422);
    expect(JSON.stringify(body)).toContain(`body.${field}`);
    await expectNothingStored(server);
  });

  it.each(['pet_name', 'pet_type', 'notes'])('%s sent twice: 422 naming the field, and neither value is kept', async (field) => {
    const body = (await expectProblem(await send([{ field, data: 'first' }, filePart(jpg), { field, data: 'second' }]), 422)) as { errors?: unknown };
    expect(body.errors).toEqual([{ field: `body.${field}`, message: 'was sent more than once' }]);
    await expectNothingStored(server);
  });

  it.each([
    ['an object', 'pet_name', '{"name": "Rex"}'],
    ['a string', 'pet_type', '"dog"'],
    ['a number', 'notes', '42'],
  ])('a text field sent as application/json (%s): 422 naming the field, never "[object Object]"', async (_kind, field, json) => {
    // FormData cannot give a text field a Content-Type: the body is written by hand.
    const boundary = 'kiln-test-boundary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"\r\nContent-Type: application/json\r\n\r\n${json}\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="pet.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
      jpg,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await fetch(`${server.url}/api/images/upload`, {
      method: 'POST',
      headers: { ...user.headers, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
    });
    const problem = await expectProblem(res, 422, 'validation_error');
    expect(JSON.stringify(problem)).toContain(`body.${field}`);
    await expectNothingStored(server);
  });

  it('text fields at their limits are kept exactly as given', async () => {
    const pet_name = '🐶'.repeat(100);
    const notes = '<script>alert(1)</script>'.padEnd(2000, 'x');
    const res = await send([{ field: 'pet_name', data: pet_name }, { field: 'notes', data: notes }, filePart(jpg)]);
    expect(res.status).toBe(201);
    const body = (await res.json()) as { order_metadata: { pet_name: string; notes: string; pet_type: string | null } };
    expect(body.order_metadata).toMatchObject({ pet_name, notes, pet_type: null });
    await server.ctx.db.kysely.deleteFrom('custom_order_files').execute();
    await server.ctx.db.kysely.deleteFrom('custom_orders').execute();
  });

  it('pet_type at its limit of 100 characters is kept exactly as given', async () => {
    const pet_type = `${'\u{1F408}'.repeat(99)}x`;
    const res = await send([{ field: 'pet_type', data: pet_type }, filePart(jpg)]);
    expect(res.status).toBe(201);
    const body = (await res.json()) as { order_metadata: { pet_type: string | null } };
    expect(body.order_metadata.pet_type).toBe(pet_type);
    const stored = await server.ctx.db.kysely.selectFrom('custom_orders').select('pet_type').execute();
    expect(stored).toEqual([{ pet_type }]);
    await server.ctx.db.kysely.deleteFrom('custom_order_files').execute();
    await server.ctx.db.kysely.deleteFrom('custom_orders').execute();
  });

  it('without credentials: 401', async () => {
    await expectProblem(await upload(server.url, {}, [filePart(jpg)]), 401);
  });

  it('a body that is not multipart: 415', async () => {
    const res = await fetch(`${server.url}/api/images/upload`, { method: 'POST', headers: { ...user.headers, 'content-type': 'application/json' }, body: '{}' });
    await expectProblem(res, 415);
  });
});

describe('MAX_FILES_PER_ORDER set to 2', () => {
  let small: TestServer;
  let customer: TestUser;
  beforeAll(async () => {
    small = await startServer({ MAX_FILES_PER_ORDER: '2' });
    customer = await registerUser(small.url, 'two-photos');
  });
  afterAll(async () => small?.close());

  it('three files: 422 too_many_files, nothing stored', async () => {
    const res = await upload(small.url, customer.headers, [1, 2, 3].map((i) => filePart(jpg, `p${i}.jpg`)));
    await expectProblem(res, 422, 'too_many_files');
    await expectNothingStored(small);
  });

  it('two files: 201 with both', async () => {
    const res = await upload(small.url, customer.headers, [filePart(jpg, 'a.jpg'), filePart(ROCKET_JPG, 'b.jpg')]);
    expect(res.status).toBe(201);
    expect(((await res.json()) as { files_uploaded: number }).files_uploaded).toBe(2);
  });
});
