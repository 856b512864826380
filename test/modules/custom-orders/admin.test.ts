import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { ADMIN, createOrder, expectProblem, filePart, loginAdmin, photo, type OrderBody } from './helpers.js';

interface Page {
  success: boolean;
  orders: OrderBody[];
  next_cursor: string | null;
}

const dialects = [{ name: 'sqlite', postgres: false }, ...(hasPostgres ? [{ name: 'postgres', postgres: true }] : [])];
if (!hasPostgres) process.stderr.write('NOTICE: custom-orders admin listing runs on SQLite only (TEST_DATABASE_URL unset)\n');

describe.each(dialects)('admin listing of every customer\'s orders ($name)', ({ postgres }) => {
  let server: TestServer;
  let drop: (() => Promise<void>) | undefined;
  let admin: { authorization: string };
  let ann: TestUser;
  const made: OrderBody[] = [];

  async function page(query: string, headers: Record<string, string> = admin): Promise<Response> {
    return fetch(`${server.url}/admin/orders${query}`, { headers });
  }

  it('takes empty query values as absent (?status=&limit=&cursor=)', async () => {
    const res = await page('?status=&limit=&cursor=');
    expect(res.status).toBe(200);
    expect(((await res.json()) as { orders: unknown[] }).orders.length).toBe(made.length);
  });

  beforeAll(async () => {
    const env: Record<string, string> = { ...ADMIN };
    if (postgres) {
      const db = await createTestDatabase();
      env.DATABASE_URL = db.url;
      drop = db.drop;
    }
    server = await startServer(env);
    admin = await loginAdmin(server.url);
    ann = await registerUser(server.url, 'ann');
    const ben = await registerUser(server.url, 'ben');
    const jpg = await photo(640);
    for (let i = 0; i < 5; i++) made.push(await createOrder(server.url, (i % 2 ? ben : ann).headers, [filePart(jpg)]));
    for (const o of made.slice(0, 2)) {
      await fetch(`${server.url}/api/images/orders/${o.order_id}/status`, {
        method: 'PUT',
        headers: { ...admin, 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'in_review' }),
      });
    }
  });
  afterAll(async () => {
    await server?.close();
    await drop?.();
  });

  it('pages through every order, newest first, without gaps or repeats', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await page(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      const body = (await res.json()) as Page;
      expect(body.success).toBe(true);
      expect(body.orders.length).toBeLessThanOrEqual(2);
      seen.push(...body.orders.map((o) => o.order_id));
      cursor = body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...made].reverse().map((o) => o.order_id));
  });

  it('filters by status', async () => {
    const body = (await (await page('?status=in_review')).json()) as Page;
    expect(body.orders.map((o) => o.order_id).sort()).toEqual(made.slice(0, 2).map((o) => o.order_id).sort());
    expect(body.orders.every((o) => o.status === 'in_review')).toBe(true);
    expect(body.next_cursor).toBeNull();
  });

  it('is for admins only; bad queries are 422', async () => {
    await expectProblem(await page('', ann.headers), 403);
    await expectProblem(await fetch(`${server.url}/admin/orders`), 401);
    await expectProblem(await page('?status=lost'), 422);
    await expectProblem(await page('?limit=0'), 422);
    await expectProblem(await page('?cursor=not-a-cursor'), 422, 'invalid_cursor');
  });

  it('refuses a status body that is not JSON (415) or is broken JSON (400), changing nothing', async () => {
    const id = made[4]?.order_id ?? '';
    const put = (type: string, body: string) => fetch(`${server.url}/api/images/orders/${id}/status`, { method: 'PUT', headers: { ...admin, 'content-type': type }, body });
    await expectProblem(await put('application/x-www-form-urlencoded', 'status=in_review'), 415);
    await expectProblem(await put('application/json', '{"status":'), 400, 'invalid_json');
    const order = await fetch(`${server.url}/api/images/orders/${id}`, { headers: admin });
    expect(((await order.json()) as { order: { status: string } }).order.status).toBe('pending');
  });

  it('deletes under the row lock: a pending order goes, one in review stays (409)', async () => {
    const del = (id: string) => fetch(`${server.url}/api/images/orders/${id}`, { method: 'DELETE', headers: ann.headers });
    await expectProblem(await del(made[0]?.order_id ?? ''), 409, 'order_not_deletable');
    const extra = await createOrder(server.url, ann.headers, [filePart(await photo(640))]);
    expect((await del(extra.order_id)).status).toBe(200);
    await expectProblem(await del(extra.order_id), 404);
  });

  it('counts orders by status for /metrics from the database', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toContain('kiln_orders{status="pending"} 3');
    expect(text).toContain('kiln_orders{status="in_review"} 2');
  });
});
