/**
 * The shop's products and orders against the built server in a child process
 * (SQLite and local blobs in a temp DATA_DIR unless DATABASE_URL is set in the
 * environment), autocannon in this process with keep-alive connections:
 *
 * - reading: GET /products?limit=20 (a page with its pictures) and
 *   GET /products/{id}, anonymous, for BENCH_SECONDS each;
 * - ordering: POST /orders of two lines, the requests taking turns among
 *   16 buyers' tokens, spread over 200 products, and then all on the same
 *   two products (every order takes the same rows' stock);
 * - selling out: a product with 2000 in stock and more orders than that sent
 *   as fast as the connections go; the server must sell exactly 2000, answer
 *   409 out_of_stock to the rest and end at 0 in stock.
 *
 * Orders/s, p50, p99, and whether the stock adds up after each phase.
 * Figures, never pass/fail.
 *
 *   npm run bench -- shop        (BENCH_SECONDS=10; CONNECTIONS=16)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fixture, postMultipart } from '../test/helpers/upload.js';
import { loginHeaders, registerUser } from '../test/helpers/users.js';
import { startBenchServer, type BenchServer } from './lib/kiln-server.js';
import { autocannon, statusesOf, type CannonOptions, type CannonRequest, type CannonResult } from './lib/load.js';
import { fmt, table } from './lib/measure.js';
import { machineLine } from './lib/report.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const PRODUCTS = 200;
const PICTURED = 20;
const SELL_OUT_STOCK = 2000;
const ADMIN = { ADMIN_EMAIL: 'bench-admin@example.com', ADMIN_PASSWORD: 'bench-admin-password-1' };

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  statuses: Record<string, number>;
  note: string;
}

async function json<T>(res: Response): Promise<T> {
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function main(): Promise<void> {
  console.log(`# Shop: products and orders, ${CONNECTIONS} keep-alive connections (autocannon, this process), ${SECONDS} s a phase; ${process.env.DATABASE_URL ? 'PostgreSQL' : 'SQLite'}, local blobs`);
  console.log(machineLine());
  const kiln: BenchServer = await startBenchServer(ADMIN);
  try {
    const admin = { ...(await loginHeaders(kiln.url, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD)), 'content-type': 'application/json' };
    const create = async (body: Record<string, unknown>) => json<{ id: string }>(await fetch(`${kiln.url}/products`, { method: 'POST', headers: admin, body: JSON.stringify(body) }));
    const stockOf = async (id: string) => (await json<{ stock_quantity: number }>(await fetch(`${kiln.url}/products/${id}`, { headers: admin }))).stock_quantity;

    const ids: string[] = [];
    for (let i = 0; i < PRODUCTS; i++) ids.push((await create({ name: `Product ${i}`, description: 'A thing to sell', price: `${(i % 50) + 1}.99`, category: `c${i % 5}`, stock_quantity: 1_000_000_000 })).id);
    const picture = fixture('rocket_small_640x427.jpg');
    for (const id of ids.slice(-PICTURED)) {
      const res = await postMultipart(`${kiln.url}/products/${id}/images`, [{ field: 'file', filename: 'p.jpg', data: picture, type: 'image/jpeg' }], { authorization: admin.authorization });
      if (res.status !== 201) throw new Error(`picture: ${res.status}`);
    }
    const buyers = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => registerUser(kiln.url, `buyer${i}`)));

    const rows: Row[] = [];
    const run = async (name: string, opts: Omit<CannonOptions, 'url' | 'connections'>, note = ''): Promise<CannonResult> => {
      await autocannon({ url: kiln.url, connections: CONNECTIONS, ...opts, duration: 1, amount: undefined }); // warm-up
      const r = await autocannon({ url: kiln.url, connections: CONNECTIONS, ...opts });
      rows.push({ name, rps: r.requests.total / r.duration, p50: r.latency.p50, p99: r.latency.p99, statuses: statusesOf(r), note });
      return r;
    };

    await run('GET /products?limit=20 (page with pictures)', { duration: SECONDS, requests: [{ method: 'GET', path: '/products?limit=20' }] });
    await run('GET /products/{id}', { duration: SECONDS, requests: ids.slice(-PICTURED).map((id) => ({ method: 'GET', path: `/products/${id}` })) });

    // One request per buyer, taken in turn by every connection; two lines each.
    const orderRequests = (productOf: (i: number) => [string, string]): CannonRequest[] =>
      buyers.flatMap((b, i) => {
        const [x, y] = productOf(i);
        return [{ method: 'POST', path: '/orders', headers: { ...b.headers, 'content-type': 'application/json' }, body: JSON.stringify({ items: [{ product_id: x, quantity: 1 }, { product_id: y, quantity: 2 }] }) }];
      });
    const ordersOf = async (): Promise<number> => {
      let count = 0;
      for (const b of buyers) {
        let cursor: string | null = null;
        do {
          const page: { orders: unknown[]; next_cursor: string | null } = await json(await fetch(`${kiln.url}/orders?limit=100${cursor ? `&cursor=${cursor}` : ''}`, { headers: b.headers }));
          count += page.orders.length;
          cursor = page.next_cursor;
        } while (cursor);
      }
      return count;
    };

    const spreadIds = (i: number): [string, string] => [ids[(i * 7) % PRODUCTS] as string, ids[(i * 13 + 1) % PRODUCTS] as string];
    await run('POST /orders, 2 lines over 200 products', { duration: SECONDS, requests: orderRequests(spreadIds) });

    const hot = (await create({ name: 'Hot item', price: '9.99', stock_quantity: 1_000_000_000 })).id;
    const hot2 = (await create({ name: 'Hot item 2', price: '4.99', stock_quantity: 1_000_000_000 })).id;
    const before = await ordersOf();
    await run('POST /orders, all on the same 2 products', { duration: SECONDS, requests: orderRequests(() => [hot, hot2]) });
    // autocannon stops on time with requests still in flight, which the server completes after: let them land before counting.
    await sleep(1000);
    const made = (await ordersOf()) - before;
    const sold = 1_000_000_000 - (await stockOf(hot));
    const sold2 = 1_000_000_000 - (await stockOf(hot2));
    const row = rows[rows.length - 1] as Row;
    row.note = `${made} orders made (with the warm-up's), ${sold} and ${sold2} units sold: ${sold === made && sold2 === 2 * made ? 'stock adds up' : 'STOCK DOES NOT ADD UP'}`;

    const scarce = (await create({ name: 'Limited edition', price: '99.00', stock_quantity: SELL_OUT_STOCK })).id;
    const sellOut = await autocannon({
      url: kiln.url,
      connections: CONNECTIONS,
      amount: SELL_OUT_STOCK + 1000,
      requests: buyers.map((b) => ({ method: 'POST', path: '/orders', headers: { ...b.headers, 'content-type': 'application/json' }, body: JSON.stringify({ items: [{ product_id: scarce, quantity: 1 }] }) })),
    });
    const sellStatuses = statusesOf(sellOut);
    const left = await stockOf(scarce);
    rows.push({
      name: `sell-out: ${SELL_OUT_STOCK} in stock, ${SELL_OUT_STOCK + 1000} orders`,
      rps: sellOut.requests.total / sellOut.duration,
      p50: sellOut.latency.p50,
      p99: sellOut.latency.p99,
      statuses: sellStatuses,
      note: `${sellStatuses['201'] ?? 0} sold, ${sellStatuses['409'] ?? 0} out_of_stock, ${left} left: ${sellStatuses['201'] === SELL_OUT_STOCK && left === 0 ? 'exact' : 'NOT EXACT'}`,
    });

    console.log();
    console.log(
      table(
        ['phase', 'requests/s', 'p50 ms', 'p99 ms', 'answers', 'note'],
        rows.map((r) => [r.name, fmt(r.rps, 0), fmt(r.p50, 1), fmt(r.p99, 1), Object.entries(r.statuses).map(([c, n]) => `${c}: ${n}`).join(', '), r.note]),
      ),
    );
  } finally {
    await kiln.close();
  }
}

await main();
