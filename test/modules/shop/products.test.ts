import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { filesUnder } from '../../helpers/files.js';
import { TestClock } from '../../auth/helpers.js';
import { call, makeProduct, startShop, type OrderJson, type ProductJson } from './helpers.js';

let shop: Awaited<ReturnType<typeof startShop>>;
let alice: TestUser;
/** The server's clock, moved on where a test needs a change to be later than what it changes. */
const clock = new TestClock();

beforeAll(async () => {
  shop = await startShop({}, { clock });
  alice = await registerUser(shop.url, 'alice');
});
afterAll(async () => shop?.close());

const ROCKET = fixture('rocket_small_640x427.jpg');

describe('products: who may do what', () => {
  it('anyone reads; creating, changing and deleting need an admin (401 without credentials, 403 for a user)', async () => {
    const product = await makeProduct(shop.url, shop.admin);
    expect((await call(shop.url, 'GET', `/products/${product.id}`)).status).toBe(200);
    expect((await call(shop.url, 'GET', '/products')).status).toBe(200);
    for (const [method, path, body] of [
      ['POST', '/products', { name: 'x', price: '1.00' }],
      ['PUT', `/products/${product.id}`, { price: '1.00' }],
      ['DELETE', `/products/${product.id}`, undefined],
      ['POST', `/products/${product.id}/images/from-ean`, { ean_code: '4006381333931' }],
    ] as const) {
      const anonymous = await call(shop.url, method, path, {}, body);
      expect(anonymous.status, `${method} ${path}`).toBe(401);
      expect(anonymous.type).toMatch(/^application\/problem\+json/);
      const user = await call(shop.url, method, path, alice.headers, body);
      expect(user.status, `${method} ${path}`).toBe(403);
      expect(user.body).toMatchObject({ code: 'admin_required' });
    }
    const upload = await postMultipart(`${shop.url}/products/${product.id}/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET }], alice.headers);
    expect(upload.status).toBe(403);
    // Nothing of the refused calls happened.
    expect((await call<ProductJson>(shop.url, 'GET', `/products/${product.id}`)).body).toEqual(product);
  });
});

describe('products: the record and its money', () => {
  it('creates a product with every field, the price an exact decimal string', async () => {
    const res = await call<ProductJson>(shop.url, 'POST', '/products', shop.admin, {
      name: '  Custom pet portrait ',
      description: 'Oil on canvas',
      price: '49.90',
      currency: 'EUR',
      category: 'portraits',
      ean_code: '4006381333931',
      stock_quantity: 3,
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      name: 'Custom pet portrait',
      description: 'Oil on canvas',
      price: '49.90',
      currency: 'EUR',
      category: 'portraits',
      ean_code: '4006381333931',
      image_url: null,
      images: [],
      stock_quantity: 3,
      is_active: true,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      updated_at: res.body.created_at,
    });
    expect(await call(shop.url, 'GET', `/products/${res.body.id}`)).toMatchObject({ status: 200, body: res.body });
  });

  it('takes a JSON number as the decimal it was written as, and defaults to EUR, no stock, active', async () => {
    const p = await makeProduct(shop.url, shop.admin, { price: 0.29, stock_quantity: undefined });
    expect(p).toMatchObject({ price: '0.29', currency: 'EUR', stock_quantity: 0, is_active: true, description: '', category: null, ean_code: null });
    const yen = await makeProduct(shop.url, shop.admin, { price: '1500', currency: 'JPY' });
    expect(yen.price).toBe('1500');
  });

  it('refuses a bad price, currency, barcode or field with a 422 naming it, storing nothing', async () => {
    const before = (await call<{ products: ProductJson[] }>(shop.url, 'GET', '/products?limit=100', shop.admin)).body.products.length;
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ name: 'x', price: '-1.00' }, 'invalid_price', 'body.price'],
      [{ name: 'x', price: '12.345' }, 'invalid_price', 'body.price'],
      [{ name: 'x', price: '12.5', currency: 'JPY' }, 'invalid_price', 'body.price'],
      [{ name: 'x', price: '1e3' }, 'invalid_price', 'body.price'],
      [{ name: 'x', price: '1.00', currency: 'eur' }, 'validation_error', 'body.currency'],
      [{ name: 'x', price: '1.00', currency: 'XYZ' }, 'invalid_currency', 'body.currency'],
      [{ name: 'x', price: '1.00', currency: 'EUX' }, 'invalid_currency', 'body.currency'],
      [{ name: 'x', price: '1.00', ean_code: '4006381333932' }, 'invalid_ean', 'body.ean_code'],
      [{ name: '', price: '1.00' }, 'validation_error', 'body.name'],
      [{ name: '   ', price: '1.00' }, 'validation_error', 'body.name'],
      [{ name: 'x' }, 'validation_error', 'body.price'],
      [{ name: 'x', price: '1.00', stock_quantity: -1 }, 'validation_error', 'body.stock_quantity'],
      // A field the product does not have is named, with what is wrong with it.
      [{ name: 'x', price: '1.00', colour: 'red' }, 'validation_error', 'body.colour'],
    ];
    for (const [body, code, field] of cases) {
      const res = await call<{ code: string; errors: Array<{ field: string }> }>(shop.url, 'POST', '/products', shop.admin, body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.code, JSON.stringify(body)).toBe(code);
      expect(res.body.errors.map((e) => e.field).join(' '), JSON.stringify(body)).toContain(field);
    }
    const extra = await call<{ detail: string }>(shop.url, 'POST', '/products', shop.admin, { name: 'x', price: '1.00', colour: 'red' });
    expect(extra.body.detail).toBe('body.colour is not a field this request takes.');
    expect((await call<{ products: ProductJson[] }>(shop.url, 'GET', '/products?limit=100', shop.admin)).body.products.length).toBe(before);
  });

  it('PUT changes the fields given and keeps the rest; a new currency needs its price', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Frame', price: '20.00', category: 'frames' });
    const changed = await call<ProductJson>(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { price: '24.99', stock_quantity: 7 });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ id: p.id, name: 'Frame', price: '24.99', stock_quantity: 7, category: 'frames', created_at: p.created_at });
    expect(changed.body.updated_at >= p.updated_at).toBe(true);

    const made = await call(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { currency: 'XYZ', price: '20' });
    expect([made.status, (made.body as { code?: string }).code]).toEqual([422, 'invalid_currency']);
    const noPrice = await call(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { currency: 'JPY' });
    expect(noPrice).toMatchObject({ status: 422, body: { code: 'price_required' } });
    const yen = await call<ProductJson>(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { currency: 'JPY', price: 3000 });
    expect(yen.body).toMatchObject({ currency: 'JPY', price: '3000' });

    expect((await call(shop.url, 'PUT', `/products/${p.id}`, shop.admin, {})).status).toBe(422);
    expect((await call(shop.url, 'PUT', '/products/nope', shop.admin, { price: '1.00' })).status).toBe(404);
  });

  it('PUT keeps every field it does not name (an inactive product stays inactive, its pictures stay) and moves updated_at on', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Kept', description: 'Hand-thrown', category: 'kept', ean_code: '4006381333931', stock_quantity: 4, is_active: false });
    const pic = await postMultipart(`${shop.url}/products/${p.id}/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET }], shop.admin);
    expect(pic.status).toBe(201);
    const before = (await call<ProductJson>(shop.url, 'GET', `/products/${p.id}`, shop.admin)).body;
    expect(before.images).toHaveLength(1);

    clock.advanceSeconds(1);
    const changed = await call<ProductJson>(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { price: '30.00' });
    expect(changed.status).toBe(200);
    expect(changed.body).toEqual({ ...before, price: '30.00', updated_at: expect.stringMatching(/Z$/) });
    expect(Date.parse(changed.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(before.updated_at) + 1000);
    expect((await call<ProductJson>(shop.url, 'GET', `/products/${p.id}`, shop.admin)).body).toEqual(changed.body);
    // Still hidden from everyone but admins.
    expect((await call(shop.url, 'GET', `/products/${p.id}`)).status).toBe(404);
  });
});

/** The listing's SQL (LIKE and its escape, keyset paging) runs on both databases. */
describe.each([
  { database: 'SQLite', skip: false },
  { database: 'PostgreSQL', skip: !hasPostgres },
])('products: listing on $database', ({ database, skip }) => {
  let tag: string;
  const made: ProductJson[] = [];
  let shop: Awaited<ReturnType<typeof startShop>>;
  let drop: (() => Promise<void>) | undefined;
  let reader: TestUser;

  beforeAll(async () => {
    if (skip) return;
    const db = database === 'PostgreSQL' ? await createTestDatabase() : undefined;
    drop = db?.drop;
    shop = await startShop(db ? { DATABASE_URL: db.url } : {});
    reader = await registerUser(shop.url, 'reader');
    tag = `cat${Date.now()}`;
    made.push(await makeProduct(shop.url, shop.admin, { name: 'Blue vase', category: tag, description: 'glazed' }));
    made.push(await makeProduct(shop.url, shop.admin, { name: 'Red bowl', category: tag, description: 'Blue rim, 100% stoneware' }));
    made.push(await makeProduct(shop.url, shop.admin, { name: 'Hidden plate', category: tag, is_active: false }));
    made.push(await makeProduct(shop.url, shop.admin, { name: 'Green cup', category: tag }));
  });
  afterAll(async () => {
    await shop?.close();
    await drop?.();
  });

  const list = async (query: string, headers: Record<string, string> = {}) =>
    call<{ products: ProductJson[]; next_cursor: string | null }>(shop.url, 'GET', `/products?category=${tag}&${query}`, headers);

  it.skipIf(skip)('shows active products newest first to everyone, and inactive ones to admins', async () => {
    const anyone = await list('');
    expect(anyone.body.products.map((p) => p.name)).toEqual(['Green cup', 'Red bowl', 'Blue vase']);
    expect((await list('', reader.headers)).body.products.map((p) => p.name)).toEqual(['Green cup', 'Red bowl', 'Blue vase']);
    expect((await list('', shop.admin)).body.products.map((p) => p.name)).toEqual(['Green cup', 'Hidden plate', 'Red bowl', 'Blue vase']);
  });

  it.skipIf(skip)('hides an inactive product from everyone but admins (404 as if it did not exist)', async () => {
    const hidden = made[2] as ProductJson;
    expect((await call(shop.url, 'GET', `/products/${hidden.id}`)).status).toBe(404);
    expect((await call(shop.url, 'GET', `/products/${hidden.id}`, reader.headers)).body).toMatchObject({ code: 'product_not_found' });
    expect((await call(shop.url, 'GET', `/products/${hidden.id}`, shop.admin)).status).toBe(200);
  });

  it.skipIf(skip)('finds text in the name or description, case-insensitively, with % and _ taken literally', async () => {
    expect((await list('q=blue')).body.products.map((p) => p.name)).toEqual(['Red bowl', 'Blue vase']);
    expect((await list('q=100%25')).body.products.map((p) => p.name)).toEqual(['Red bowl']);
    expect((await list('q=10_%25')).body.products).toEqual([]);
    expect((await list('q=_')).body.products).toEqual([]);
  });

  it.skipIf(skip)('ignores case beyond ASCII: Ö and É as well as O and E', async () => {
    const category = `${tag}u`;
    await makeProduct(shop.url, shop.admin, { name: 'ÖLKANNE', category, description: 'Émail bleu' });
    const found = async (q: string) =>
      (await call<{ products: ProductJson[] }>(shop.url, 'GET', `/products?category=${category}&q=${encodeURIComponent(q)}`)).body.products.map((p) => p.name);
    for (const q of ['ölkanne', 'ÖLKANNE', 'Ölk', 'émail', 'ÉMAIL', 'kanne']) expect(await found(q), q).toEqual(['ÖLKANNE']);
    expect(await found('olkanne')).toEqual([]);
  });

  it.skipIf(skip)('says a page ends the list (next_cursor null) when it does, a full page included', async () => {
    const all = await list('limit=4', shop.admin);
    expect(all.body.products.map((p) => p.name)).toEqual(['Green cup', 'Hidden plate', 'Red bowl', 'Blue vase']);
    expect(all.body.next_cursor).toBeNull();
    const active = await list('limit=3');
    expect(active.body.products.map((p) => p.name)).toEqual(['Green cup', 'Red bowl', 'Blue vase']);
    expect(active.body.next_cursor).toBeNull();
  });

  it.skipIf(skip)('pages with next_cursor until it is null, each product once', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { products: ProductJson[]; next_cursor: string | null } } = await list(`limit=1${cursor ? `&cursor=${cursor}` : ''}`, shop.admin);
      expect(page.body.products.length).toBeLessThanOrEqual(1);
      seen.push(...page.body.products.map((p) => p.name));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(['Green cup', 'Hidden plate', 'Red bowl', 'Blue vase']);
    const bad = await list('cursor=not-a-cursor');
    expect(bad).toMatchObject({ status: 422, body: { code: 'invalid_cursor' } });
    expect((await list('limit=0')).status).toBe(422);
    expect((await list('limit=101')).status).toBe(422);
  });
});

describe('products: a page by default', () => {
  it('holds 20 products when no limit is named; the next page has the rest', async () => {
    const category = `many${Date.now()}`;
    const made: ProductJson[] = [];
    for (let i = 0; i < 21; i++) made.push(await makeProduct(shop.url, shop.admin, { name: `Item ${i}`, category }));
    const first = await call<{ products: ProductJson[]; next_cursor: string | null }>(shop.url, 'GET', `/products?category=${category}`);
    expect(first.status).toBe(200);
    expect(first.body.products).toHaveLength(20);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await call<{ products: ProductJson[]; next_cursor: string | null }>(shop.url, 'GET', `/products?category=${category}&cursor=${first.body.next_cursor}`);
    expect(second.body.products).toHaveLength(1);
    expect(second.body.next_cursor).toBeNull();
    expect([...first.body.products, ...second.body.products].map((p) => p.id).sort()).toEqual(made.map((p) => p.id).sort());
  });
});

describe('products: delete', () => {
  it('removes a product no order refers to, with its pictures; one an order refers to becomes inactive', async () => {
    const lone = await makeProduct(shop.url, shop.admin, { name: 'Lone' });
    const pic = await postMultipart(`${shop.url}/products/${lone.id}/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET }], shop.admin);
    expect(pic.status).toBe(201);
    const { image_id } = (await pic.json()) as { image_id: string };
    expect((await filesUnder(shop.dataDir)).filter((f) => f.includes(image_id))).toHaveLength(4);

    expect((await call(shop.url, 'DELETE', `/products/${lone.id}`, shop.admin)).status).toBe(204);
    expect((await call(shop.url, 'GET', `/products/${lone.id}`, shop.admin)).status).toBe(404);
    expect((await filesUnder(shop.dataDir)).filter((f) => f.includes(image_id))).toEqual([]);
    expect((await call(shop.url, 'DELETE', `/products/${lone.id}`, shop.admin)).status).toBe(404);

    const sold = await makeProduct(shop.url, shop.admin, { name: 'Sold once', stock_quantity: 5 });
    const order = await call<OrderJson>(shop.url, 'POST', '/orders', alice.headers, { items: [{ product_id: sold.id, quantity: 1 }] });
    expect(order.status).toBe(201);
    expect((await call(shop.url, 'DELETE', `/products/${sold.id}`, shop.admin)).status).toBe(204);
    const after = await call<ProductJson>(shop.url, 'GET', `/products/${sold.id}`, shop.admin);
    expect(after.body).toMatchObject({ id: sold.id, is_active: false });
    expect((await call(shop.url, 'GET', `/products/${sold.id}`, alice.headers)).status).toBe(404);
    // The order still names what was bought.
    expect((await call<OrderJson>(shop.url, 'GET', `/orders/${order.body.id}`, alice.headers)).body.items).toEqual([{ product_id: sold.id, name: 'Sold once', unit_price: '12.50', quantity: 1 }]);
  });
});

describe('products: pictures', () => {
  it('stores an uploaded picture in the four sizes and serves each with ETag and 304', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Pictured' });
    const res = await postMultipart(`${shop.url}/products/${p.id}/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET }], shop.admin);
    expect(res.status).toBe(201);
    const image = (await res.json()) as { product_id: string; image_id: string; source: string; width: number; height: number; urls: Record<string, string> };
    expect(image).toMatchObject({ product_id: p.id, source: 'upload', ean_code: null, width: 640, height: 427 });
    expect(Object.keys(image.urls)).toEqual(['original', 'medium', 'thumb', 'game']);

    const product = (await call<ProductJson>(shop.url, 'GET', `/products/${p.id}`)).body;
    expect(product.images.map((i) => i.image_id)).toEqual([image.image_id]);
    expect(product.image_url).toBe(image.urls.medium);

    const thumb = await fetch(`${shop.url}${image.urls.thumb}`);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('content-type')).toBe('image/jpeg');
    const etag = thumb.headers.get('etag') as string;
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    const again = await fetch(`${shop.url}${image.urls.thumb}`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(thumb.headers.get('cache-control')).toBe('public, max-age=300');
    const length = Number(thumb.headers.get('content-length'));
    const part = await fetch(`${shop.url}${image.urls.thumb}`, { headers: { range: 'bytes=0-99' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 0-99/${length}`);
    expect(part.headers.get('cache-control')).toBe('public, max-age=300');
    expect((await part.arrayBuffer()).byteLength).toBe(100);
    const game = await fetch(`${shop.url}${image.urls.game}`);
    expect(game.status).toBe(200);
    expect((await game.arrayBuffer()).byteLength).toBeGreaterThan(100);

    expect((await fetch(`${shop.url}/products/${p.id}/images/${image.image_id}?size=huge`)).status).toBe(422);
    expect((await fetch(`${shop.url}/products/${p.id}/images/nope`)).status).toBe(404);
    // The picture of an inactive product is hidden with it.
    await call(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { is_active: false });
    expect((await fetch(`${shop.url}${image.urls.thumb}`)).status).toBe(404);
    const adminOnly = await fetch(`${shop.url}${image.urls.thumb}`, { headers: shop.admin });
    expect(adminOnly.status).toBe(200);
    // Only the admin may see it now: a shared cache must not keep it for anyone else.
    expect(adminOnly.headers.get('cache-control')).toBe('private, max-age=300');
  });

  it("shows a product's pictures in upload order, in the listing as in the product; image_url is the first one's medium size", async () => {
    const category = `pictured${Date.now()}`;
    const p = await makeProduct(shop.url, shop.admin, { name: 'Two pictures', category });
    const uploaded: Array<{ image_id: string; urls: Record<string, string> }> = [];
    for (const name of ['rocket_small_640x427.jpg', 'chelsea_cat_small_451x300.png']) {
      const res = await postMultipart(`${shop.url}/products/${p.id}/images`, [{ field: 'file', filename: name, data: fixture(name) }], shop.admin);
      expect(res.status).toBe(201);
      uploaded.push((await res.json()) as { image_id: string; urls: Record<string, string> });
    }
    const product = (await call<ProductJson>(shop.url, 'GET', `/products/${p.id}`)).body;
    expect(product.images.map((i) => [i.image_id, i.width, i.height])).toEqual([
      [uploaded[0]?.image_id, 640, 427],
      [uploaded[1]?.image_id, 451, 300],
    ]);
    expect(product.image_url).toBe(uploaded[0]?.urls.medium);
    const listed = await call<{ products: ProductJson[]; next_cursor: string | null }>(shop.url, 'GET', `/products?category=${category}`);
    expect(listed.body).toEqual({ products: [product], next_cursor: null });
  });

  it('refuses what is not an image (415) or to a missing product (404), storing nothing', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Bare' });
    const before = (await filesUnder(shop.dataDir)).length;
    expect(before).toBeGreaterThan(0);
    const text = await postMultipart(`${shop.url}/products/${p.id}/images`, [{ field: 'file', filename: 'x.jpg', data: 'hello, not a picture', type: 'image/jpeg' }], shop.admin);
    expect(text.status).toBe(415);
    expect(text.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const empty = await postMultipart(`${shop.url}/products/${p.id}/images`, [{ field: 'file', filename: 'x.jpg', data: Buffer.alloc(0) }], shop.admin);
    expect(empty.status).toBe(415);
    const missing = await postMultipart(`${shop.url}/products/nope/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET }], shop.admin);
    expect(missing.status).toBe(404);
    expect((await filesUnder(shop.dataDir)).length).toBe(before);
    expect((await call<ProductJson>(shop.url, 'GET', `/products/${p.id}`)).body.images).toEqual([]);
  });

  it('refuses a file over MAX_UPLOAD_SIZE and an image over MAX_IMAGE_PIXELS with 413, storing nothing', async () => {
    // ROCKET: 112525 bytes, 640 x 427 = 273280 pixels.
    const small = await startShop({ MAX_UPLOAD_SIZE: '100000', MAX_IMAGE_PIXELS: '1000000' });
    const tight = await startShop({ MAX_IMAGE_PIXELS: '200000' });
    try {
      for (const [server, code] of [[small, 'file_too_large'], [tight, 'image_too_large']] as const) {
        const p = await makeProduct(server.url, server.admin, { name: 'Limited' });
        const before = (await filesUnder(server.dataDir)).length;
        const res = await postMultipart(`${server.url}/products/${p.id}/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET }], server.admin);
        expect(res.status, code).toBe(413);
        expect(((await res.json()) as { code: string }).code).toBe(code);
        expect((await filesUnder(server.dataDir)).length).toBe(before);
        expect((await call<ProductJson>(server.url, 'GET', `/products/${p.id}`)).body.images).toEqual([]);
      }
    } finally {
      await small.close();
      await tight.close();
    }
  });
});
