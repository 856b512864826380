import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { postMultipart } from '../../helpers/upload.js';
import { ADMIN, call, makeProduct, startShop, type OrderJson, type ProductJson } from './helpers.js';
import { ROCKET_JPG } from '../custom-orders/helpers.js';
import { TestClock } from '../../auth/helpers.js';

let shop: Awaited<ReturnType<typeof startShop>>;
let alice: TestUser;
let bob: TestUser;
/** The server's clock, moved on where a test needs a change to be later than what it changes. */
const clock = new TestClock();

beforeAll(async () => {
  shop = await startShop({}, { clock });
  alice = await registerUser(shop.url, 'alice');
  bob = await registerUser(shop.url, 'bob');
});
afterAll(async () => shop?.close());

const order = (user: { headers: Record<string, string> } | Record<string, string>, body: unknown, base = shop.url) =>
  call<OrderJson>(base, 'POST', '/orders', 'headers' in user ? (user.headers as Record<string, string>) : user, body);

/**
 * Deletes the product from another connection, in a transaction left open
 * (PostgreSQL: its row stays locked; SQLite: the database's write lock is
 * held) until the returned function commits it.
 */
async function deleteInOpenTransaction(databaseUrl: string | undefined, dataDir: string, productId: string): Promise<() => Promise<void>> {
  if (databaseUrl) {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    await client.query('begin');
    await client.query('delete from products where product_id = $1', [productId]);
    return async () => {
      await client.query('commit');
      await client.end();
    };
  }
  const other = new SqliteDatabase(path.join(dataDir, 'kiln.db'));
  other.exec('begin immediate');
  other.prepare('delete from products where product_id = ?').run(productId);
  return async () => {
    other.exec('commit');
    other.close();
  };
}
const stockOf = async (id: string) => (await call<ProductJson>(shop.url, 'GET', `/products/${id}`, shop.admin)).body.stock_quantity;
const setStatus = (id: string, status: string) => call<OrderJson>(shop.url, 'PUT', `/orders/${id}/status`, shop.admin, { status });

describe('placing an order', () => {
  it('prices lines from the products as they are now, totals exactly, and reserves the stock', async () => {
    const mug = await makeProduct(shop.url, shop.admin, { name: 'Mug', price: '0.10', stock_quantity: 10 });
    const print = await makeProduct(shop.url, shop.admin, { name: 'Print', price: '0.20', stock_quantity: 5 });
    const res = await order(alice, { items: [{ product_id: mug.id, quantity: 1 }, { product_id: print.id, quantity: 2 }, { product_id: mug.id, quantity: 2 }] });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      user_id: alice.id,
      // A product named twice is one line; 3 x 0.10 + 2 x 0.20 is 0.70 exactly (in floats it is 0.7000000000000001).
      items: [
        { product_id: mug.id, name: 'Mug', unit_price: '0.10', quantity: 3 },
        { product_id: print.id, name: 'Print', unit_price: '0.20', quantity: 2 },
      ],
      total_amount: '0.70',
      currency: 'EUR',
      status: 'pending',
      stripe_payment_intent_id: null,
      custom_order_id: null,
      created_at: expect.stringMatching(/Z$/),
      updated_at: res.body.created_at,
    });
    expect(await stockOf(mug.id)).toBe(7);
    expect(await stockOf(print.id)).toBe(3);
  });

  it('refuses a price sent by the client (422), and keeps the price of the day when the product changes later', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Frame', price: '30.00' });
    const tricky = await order(alice, { items: [{ product_id: p.id, quantity: 1, unit_price: '0.01' }] });
    expect(tricky.status).toBe(422);
    const res = await order(alice, { items: [{ product_id: p.id, quantity: 1 }] });
    await call(shop.url, 'PUT', `/products/${p.id}`, shop.admin, { price: '99.00', name: 'Gold frame' });
    const later = await call<OrderJson>(shop.url, 'GET', `/orders/${res.body.id}`, alice.headers);
    expect(later.body.items).toEqual([{ product_id: p.id, name: 'Frame', unit_price: '30.00', quantity: 1 }]);
    expect(later.body.total_amount).toBe('30.00');
  });

  it('answers 409 out_of_stock when there is not enough, and takes nothing from any line', async () => {
    const plenty = await makeProduct(shop.url, shop.admin, { name: 'Plenty', stock_quantity: 50 });
    const scarce = await makeProduct(shop.url, shop.admin, { name: 'Scarce', stock_quantity: 2 });
    const res = await order(alice, { items: [{ product_id: plenty.id, quantity: 5 }, { product_id: scarce.id, quantity: 3 }] });
    expect(res.status).toBe(409);
    expect(res.type).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ code: 'out_of_stock', detail: expect.stringContaining('Scarce') });
    expect(await stockOf(plenty.id)).toBe(50);
    expect(await stockOf(scarce.id)).toBe(2);
    expect((await call<{ orders: OrderJson[] }>(shop.url, 'GET', '/orders?limit=100', alice.headers)).body.orders.some((o) => o.items.some((i) => i.product_id === plenty.id))).toBe(false);
  });

  it('refuses unknown or inactive products, mixed currencies and bad bodies with 422, and needs a user', async () => {
    const eur = await makeProduct(shop.url, shop.admin, { name: 'Euro thing' });
    const yen = await makeProduct(shop.url, shop.admin, { name: 'Yen thing', price: '500', currency: 'JPY' });
    const off = await makeProduct(shop.url, shop.admin, { name: 'Off', is_active: false });
    expect(await order(alice, { items: [{ product_id: 'nope', quantity: 1 }] })).toMatchObject({ status: 422, body: { code: 'unknown_product', errors: [{ field: 'body.items.0.product_id' }] } });
    expect(await order(alice, { items: [{ product_id: eur.id, quantity: 1 }, { product_id: off.id, quantity: 1 }] })).toMatchObject({ status: 422, body: { code: 'unknown_product', errors: [{ field: 'body.items.1.product_id' }] } });
    expect(await order(alice, { items: [{ product_id: eur.id, quantity: 1 }, { product_id: yen.id, quantity: 1 }] })).toMatchObject({ status: 422, body: { code: 'mixed_currencies' } });
    for (const body of [{ items: [] }, {}, { items: [{ product_id: eur.id, quantity: 0 }] }, { items: [{ product_id: eur.id, quantity: 1.5 }] }, { items: [{ product_id: eur.id }] }]) {
      expect((await order(alice, body)).status, JSON.stringify(body)).toBe(422);
    }
    expect((await call(shop.url, 'POST', '/orders', {}, { items: [{ product_id: eur.id, quantity: 1 }] })).status).toBe(401);
    expect(await stockOf(eur.id)).toBe(10);
    expect(await stockOf(yen.id)).toBe(10);
  });

  it('refuses more than 100 lines and a quantity over 10000 (422), and takes no stock', async () => {
    const products = await Promise.all(Array.from({ length: 101 }, (_, i) => makeProduct(shop.url, shop.admin, { name: `Line ${i}`, stock_quantity: 1 })));
    const lines = products.map((p) => ({ product_id: p.id, quantity: 1 }));
    expect((await order(alice, { items: lines })).status).toBe(422);
    expect((await order(alice, { items: lines.slice(0, 100) })).status).toBe(201);
    const big = await makeProduct(shop.url, shop.admin, { name: 'Pallet', stock_quantity: 20000 });
    expect((await order(alice, { items: [{ product_id: big.id, quantity: 10001 }] })).status).toBe(422);
    // Named on two lines, the quantities add up past the limit all the same.
    const split = await order(alice, { items: [{ product_id: big.id, quantity: 5000 }, { product_id: big.id, quantity: 5001 }] });
    expect(split).toMatchObject({ status: 422, body: { code: 'validation_error', errors: [{ field: 'body.items.1.quantity' }] } });
    expect(await stockOf(big.id)).toBe(20000);
    expect((await order(alice, { items: [{ product_id: big.id, quantity: 10000 }] })).status).toBe(201);
    expect(await stockOf(big.id)).toBe(10000);
  });

  it('refuses an order whose total in minor units is past a safe integer: 422 total_too_large, no stock taken', async () => {
    const dear = await makeProduct(shop.url, shop.admin, { name: 'Yacht', price: '9999999999.99', stock_quantity: 20000 });
    const res = await order(alice, { items: [{ product_id: dear.id, quantity: 10000 }] });
    expect(res).toMatchObject({ status: 422, body: { code: 'total_too_large', errors: [{ field: 'body.items' }] } });
    expect(await stockOf(dear.id)).toBe(20000);
    expect((await order(alice, { items: [{ product_id: dear.id, quantity: 900 }] })).status).toBe(201);
  });

  it('links the buyer\'s own custom order, and answers 404 for someone else\'s (an admin links any that exists)', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Portrait' });
    const upload = await postMultipart(`${shop.url}/api/images/upload`, [{ field: 'files', filename: 'pet.jpg', data: ROCKET_JPG, type: 'image/jpeg' }], alice.headers);
    expect(upload.status).toBe(201);
    const { order_id: customOrderId } = (await upload.json()) as { order_id: string };
    const own = await order(alice, { items: [{ product_id: p.id, quantity: 1 }], custom_order_id: customOrderId });
    expect(own.status).toBe(201);
    expect(own.body.custom_order_id).toBe(customOrderId);
    const stolen = await order(bob, { items: [{ product_id: p.id, quantity: 1 }], custom_order_id: customOrderId });
    expect(stolen).toMatchObject({ status: 404, body: { code: 'custom_order_not_found' } });
    expect(await stockOf(p.id)).toBe(9);
    // An admin may link anyone's custom order, but not one that does not exist.
    const linked = await call<OrderJson>(shop.url, 'POST', '/orders', shop.admin, { items: [{ product_id: p.id, quantity: 1 }], custom_order_id: customOrderId });
    expect(linked).toMatchObject({ status: 201, body: { custom_order_id: customOrderId } });
    const madeUp = await call(shop.url, 'POST', '/orders', shop.admin, { items: [{ product_id: p.id, quantity: 1 }], custom_order_id: 'no-such-custom-order' });
    expect(madeUp).toMatchObject({ status: 404, body: { code: 'custom_order_not_found' } });
    expect(await stockOf(p.id)).toBe(8);
  });
});

describe('reading orders', () => {
  it('shows a buyer their own orders only; admins see any and list all with ?all=true', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Card', stock_quantity: 100 });
    const carol = await registerUser(shop.url, 'carol');
    const dave = await registerUser(shop.url, 'dave');
    const c1 = (await order(carol, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    const c2 = (await order(carol, { items: [{ product_id: p.id, quantity: 2 }] })).body;
    const d1 = (await order(dave, { items: [{ product_id: p.id, quantity: 3 }] })).body;

    const carols = await call<{ orders: OrderJson[]; next_cursor: string | null }>(shop.url, 'GET', '/orders', carol.headers);
    expect(carols.body.orders.map((o) => o.id)).toEqual([c2.id, c1.id]);
    expect(carols.body.next_cursor).toBeNull();
    expect((await call(shop.url, 'GET', `/orders/${d1.id}`, carol.headers))).toMatchObject({ status: 404, body: { code: 'order_not_found' } });
    expect((await call<OrderJson>(shop.url, 'GET', `/orders/${d1.id}`, shop.admin)).body).toEqual(d1);
    expect((await call(shop.url, 'GET', '/orders?all=true', carol.headers)).status).toBe(403);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { orders: OrderJson[]; next_cursor: string | null } } = await call(shop.url, 'GET', `/orders?all=true&limit=2${cursor ? `&cursor=${cursor}` : ''}`, shop.admin);
      seen.push(...page.body.orders.map((o) => o.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen.slice(0, 3)).toEqual([d1.id, c2.id, c1.id]);
    expect(new Set(seen).size).toBe(seen.length);
    expect((await call(shop.url, 'GET', '/orders')).status).toBe(401);
    for (const cursor of ['garbage', Buffer.from(JSON.stringify(['not a date', 'x'])).toString('base64url')]) {
      expect(await call(shop.url, 'GET', `/orders?cursor=${cursor}`, alice.headers)).toMatchObject({ status: 422, body: { code: 'invalid_cursor' } });
    }
  });

  it('lists each order with its lines, 20 to a page unless limit (1-100) says otherwise, next_cursor null on the last page', async () => {
    const sticker = await makeProduct(shop.url, shop.admin, { name: 'Sticker', price: '0.50', stock_quantity: 100 });
    const pin = await makeProduct(shop.url, shop.admin, { name: 'Pin', price: '1.25', stock_quantity: 100 });
    const erin = await registerUser(shop.url, 'erin');
    const placed: OrderJson[] = [];
    for (let i = 0; i < 21; i++) {
      const res = await order(erin, { items: [{ product_id: sticker.id, quantity: 1 + (i % 3) }, { product_id: pin.id, quantity: 1 }] });
      expect(res.status).toBe(201);
      placed.push(res.body);
    }
    type Page = { orders: OrderJson[]; next_cursor: string | null };
    const first = await call<Page>(shop.url, 'GET', '/orders', erin.headers);
    expect(first.body.orders).toHaveLength(20);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await call<Page>(shop.url, 'GET', `/orders?cursor=${first.body.next_cursor}`, erin.headers);
    expect(second.body.orders).toHaveLength(1);
    expect(second.body.next_cursor).toBeNull();
    // Every order as it was placed, lines and all.
    const listed = [...first.body.orders, ...second.body.orders].sort((a, b) => (a.id < b.id ? -1 : 1));
    expect(listed).toEqual([...placed].sort((a, b) => (a.id < b.id ? -1 : 1)));

    // A full page that ends the list says so.
    const whole = await call<Page>(shop.url, 'GET', '/orders?limit=21', erin.headers);
    expect(whole.body.orders).toHaveLength(21);
    expect(whole.body.next_cursor).toBeNull();
    for (const limit of [0, 101]) {
      expect(await call(shop.url, 'GET', `/orders?limit=${limit}`, erin.headers), String(limit)).toMatchObject({ status: 422, body: { code: 'validation_error', errors: [{ field: 'querystring.limit' }] } });
    }
  });

  it("lists an admin's own orders unless the admin asks for all=true", async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Badge', stock_quantity: 10 });
    const frank = await registerUser(shop.url, 'frank');
    const theirs = (await order(frank, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    const mine = (await order(shop.admin, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    const own = await call<{ orders: OrderJson[] }>(shop.url, 'GET', '/orders?limit=100', shop.admin);
    expect(own.status).toBe(200);
    expect(own.body.orders.map((o) => o.id)).toContain(mine.id);
    expect(own.body.orders.filter((o) => o.user_id !== mine.user_id)).toEqual([]);
    const all = await call<{ orders: OrderJson[] }>(shop.url, 'GET', '/orders?all=true&limit=100', shop.admin);
    expect(all.body.orders.map((o) => o.id)).toEqual(expect.arrayContaining([mine.id, theirs.id]));
  });
});

describe('an order\'s status', () => {
  it('moves pending -> confirmed -> shipped -> delivered, and nothing after', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Lamp' });
    const o = (await order(alice, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    for (const status of ['confirmed', 'shipped', 'delivered']) {
      const res = await setStatus(o.id, status);
      expect(res.status, status).toBe(200);
      expect(res.body.status).toBe(status);
    }
    for (const status of ['cancelled', 'pending', 'shipped', 'delivered']) {
      expect(await setStatus(o.id, status), status).toMatchObject({ status: 409, body: { code: 'invalid_status_transition' } });
    }
    expect(await stockOf(p.id)).toBe(9);
  });

  it('refuses skipping a step or going back with 409, changing nothing', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Rug' });
    const o = (await order(alice, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    expect((await setStatus(o.id, 'shipped')).status).toBe(409);
    expect((await setStatus(o.id, 'delivered')).status).toBe(409);
    expect((await setStatus(o.id, 'pending')).status).toBe(409);
    expect((await setStatus(o.id, 'lost')).status).toBe(422);
    await setStatus(o.id, 'confirmed');
    expect((await setStatus(o.id, 'pending')).status).toBe(409);
    expect((await call<OrderJson>(shop.url, 'GET', `/orders/${o.id}`, alice.headers)).body.status).toBe('confirmed');
  });

  it('cancelling before shipping returns the stock; after shipping it is refused', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Clock', stock_quantity: 4 });
    const pending = (await order(alice, { items: [{ product_id: p.id, quantity: 2 }] })).body;
    const confirmed = (await order(alice, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    const shipped = (await order(alice, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    expect(await stockOf(p.id)).toBe(0);
    await setStatus(confirmed.id, 'confirmed');
    await setStatus(shipped.id, 'confirmed');
    await setStatus(shipped.id, 'shipped');

    expect((await setStatus(pending.id, 'cancelled')).body.status).toBe('cancelled');
    expect(await stockOf(p.id)).toBe(2);
    expect((await setStatus(confirmed.id, 'cancelled')).status).toBe(200);
    expect(await stockOf(p.id)).toBe(3);
    expect((await setStatus(shipped.id, 'cancelled')).status).toBe(409);
    // Cancelled is the end: a second cancel would return the stock twice.
    expect((await setStatus(pending.id, 'cancelled')).status).toBe(409);
    expect(await stockOf(p.id)).toBe(3);
  });

  it('allows exactly the moves of an order\'s life, from every status to every status; any other is 409 and changes nothing', async () => {
    const NEXT: Record<string, string[]> = { pending: ['confirmed', 'cancelled'], confirmed: ['shipped', 'cancelled'], shipped: ['delivered'], delivered: [], cancelled: [] };
    const REACH: Record<string, string[]> = { pending: [], confirmed: ['confirmed'], shipped: ['confirmed', 'shipped'], delivered: ['confirmed', 'shipped', 'delivered'], cancelled: ['cancelled'] };
    const p = await makeProduct(shop.url, shop.admin, { name: 'Globe', stock_quantity: 100 });
    for (const from of Object.keys(NEXT)) {
      for (const to of Object.keys(NEXT)) {
        const o = (await order(alice, { items: [{ product_id: p.id, quantity: 1 }] })).body;
        for (const step of REACH[from] ?? []) expect((await setStatus(o.id, step)).status).toBe(200);
        const stock = await stockOf(p.id);
        const res = await setStatus(o.id, to);
        if (NEXT[from]?.includes(to)) {
          expect(res, `${from} -> ${to}`).toMatchObject({ status: 200, body: { status: to } });
        } else {
          expect(res, `${from} -> ${to}`).toMatchObject({ status: 409, body: { code: 'invalid_status_transition' } });
          expect((await call<OrderJson>(shop.url, 'GET', `/orders/${o.id}`, alice.headers)).body.status, `${from} -> ${to}`).toBe(from);
          expect(await stockOf(p.id), `${from} -> ${to}`).toBe(stock);
        }
      }
    }
  });

  it('cancelling gives back the quantity of every line of the order', async () => {
    const cup = await makeProduct(shop.url, shop.admin, { name: 'Cup', stock_quantity: 5 });
    const saucer = await makeProduct(shop.url, shop.admin, { name: 'Saucer', stock_quantity: 5 });
    const spoon = await makeProduct(shop.url, shop.admin, { name: 'Spoon', stock_quantity: 5 });
    const placed = await order(alice, { items: [{ product_id: cup.id, quantity: 1 }, { product_id: saucer.id, quantity: 2 }, { product_id: spoon.id, quantity: 3 }] });
    expect(placed.status).toBe(201);
    expect([await stockOf(cup.id), await stockOf(saucer.id), await stockOf(spoon.id)]).toEqual([4, 3, 2]);
    expect((await setStatus(placed.body.id, 'cancelled')).status).toBe(200);
    expect([await stockOf(cup.id), await stockOf(saucer.id), await stockOf(spoon.id)]).toEqual([5, 5, 5]);
  });

  it('answers a move with the whole order, its updated_at moved on, as a GET shows it afterwards', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Teapot', price: '21.00', stock_quantity: 5 });
    const placed = (await order(alice, { items: [{ product_id: p.id, quantity: 2 }] })).body;
    clock.advanceSeconds(1);
    const moved = await setStatus(placed.id, 'confirmed');
    expect(moved.status).toBe(200);
    expect(moved.body).toEqual({ ...placed, status: 'confirmed', updated_at: expect.stringMatching(/Z$/) });
    expect(Date.parse(moved.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(placed.updated_at) + 1000);
    expect((await call<OrderJson>(shop.url, 'GET', `/orders/${placed.id}`, alice.headers)).body).toEqual(moved.body);
  });

  it('three cancels at once: one succeeds, two are 409, and the stock comes back once', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Lamp', stock_quantity: 10 });
    const placed = (await order(alice, { items: [{ product_id: p.id, quantity: 3 }] })).body;
    expect(await stockOf(p.id)).toBe(7);
    const answers = await Promise.all([1, 2, 3].map(() => setStatus(placed.id, 'cancelled')));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409]);
    expect(await stockOf(p.id)).toBe(10);
  });

  it('is an admin\'s move: 403 for the buyer, 404 for an order that does not exist', async () => {
    const p = await makeProduct(shop.url, shop.admin, { name: 'Vase' });
    const o = (await order(alice, { items: [{ product_id: p.id, quantity: 1 }] })).body;
    expect((await call(shop.url, 'PUT', `/orders/${o.id}/status`, alice.headers, { status: 'confirmed' })).status).toBe(403);
    expect((await setStatus('nope', 'confirmed')).status).toBe(404);
  });
});

/**
 * Two servers on one database (the same DATA_DIR for SQLite, one PostgreSQL
 * database), buyers racing each other through both.
 */
function raceSuite(name: string, database: () => Promise<{ env: Record<string, string>; drop: () => Promise<void> }>, skip = false): void {
  describe.skipIf(skip)(`buyers racing for stock on ${name}`, () => {
    let a: TestServer & { admin: Record<string, string> };
    let b: TestServer;
    let drop: () => Promise<void>;
    let buyers: TestUser[];
    let db: { env: Record<string, string>; drop: () => Promise<void> };

    beforeAll(async () => {
      db = await database();
      drop = db.drop;
      a = await startShop({ JWT_SECRET: 'one-secret-for-both-servers-of-this-race-test', ...db.env });
      b = await startServer({ ...ADMIN, JWT_SECRET: 'one-secret-for-both-servers-of-this-race-test', ...db.env }, db.env.DATABASE_URL ? {} : { dataDir: a.dataDir });
      buyers = await Promise.all(Array.from({ length: 8 }, (_, i) => registerUser(a.url, `buyer${i}`)));
    }, 60_000);

    afterAll(async () => {
      await b?.close();
      await a?.close();
      await drop?.();
    });

    const race = (productId: string, quantity = 1) =>
      Promise.all(buyers.map((u, i) => call<OrderJson>((i % 2 ? b : a).url, 'POST', '/orders', u.headers, { items: [{ product_id: productId, quantity }] })));

    it('a product deleted while an order waits on its row: 422 unknown_product, not 409 out_of_stock', async () => {
      const going = await makeProduct(a.url, a.admin, { name: 'Going', stock_quantity: 3 });
      // Another connection deletes the product and holds its transaction open while the order comes in.
      const commit = await deleteInOpenTransaction(db.env.DATABASE_URL, a.dataDir, going.id);
      const pending = order(buyers[0] as TestUser, { items: [{ product_id: going.id, quantity: 1 }] }, a.url);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await commit();
      const answer = await pending;
      expect(answer.status).toBe(422);
      expect(answer.body).toMatchObject({ code: 'unknown_product' });
    });

    it('the last item: exactly one order succeeds, every other gets 409 out_of_stock', async () => {
      const last = await makeProduct(a.url, a.admin, { name: 'Last one', stock_quantity: 1 });
      const answers = await race(last.id);
      expect(answers.filter((r) => r.status === 201)).toHaveLength(1);
      const refused = answers.filter((r) => r.status !== 201);
      expect(refused).toHaveLength(7);
      for (const r of refused) expect(r.body).toMatchObject({ code: 'out_of_stock' });
      expect((await call<ProductJson>(b.url, 'GET', `/products/${last.id}`, a.admin)).body.stock_quantity).toBe(0);
    });

    it('five in stock, eight buyers, two lines each: five orders, stock never below zero', async () => {
      const five = await makeProduct(a.url, a.admin, { name: 'Five', stock_quantity: 5 });
      const other = await makeProduct(a.url, a.admin, { name: 'Plenty', stock_quantity: 100 });
      // Lines in both orders of ids, so that buyers lock the two rows in opposite orders if the server did not sort them.
      const answers = await Promise.all(
        buyers.map((u, i) =>
          call<OrderJson>((i % 2 ? b : a).url, 'POST', '/orders', u.headers, {
            items: i % 2 ? [{ product_id: five.id, quantity: 1 }, { product_id: other.id, quantity: 1 }] : [{ product_id: other.id, quantity: 1 }, { product_id: five.id, quantity: 1 }],
          }),
        ),
      );
      expect(answers.filter((r) => r.status === 201)).toHaveLength(5);
      expect(answers.filter((r) => r.status === 409)).toHaveLength(3);
      expect((await call<ProductJson>(a.url, 'GET', `/products/${five.id}`, a.admin)).body.stock_quantity).toBe(0);
      expect((await call<ProductJson>(a.url, 'GET', `/products/${other.id}`, a.admin)).body.stock_quantity).toBe(95);
    });
  });
}

raceSuite('SQLite', async () => ({ env: {}, drop: async () => undefined }));
raceSuite(
  'PostgreSQL',
  async () => {
    const db = await createTestDatabase();
    return { env: { DATABASE_URL: db.url }, drop: db.drop };
  },
  !hasPostgres,
);
