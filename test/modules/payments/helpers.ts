/** Shared pieces of the payment tests: a Kiln wired to the fake Stripe, an admin, orders, JSON calls. */
import { expect } from 'vitest';
import type { Env } from '../../../src/config.js';
import { newId } from '../../../src/ids.js';
import { createTestDatabase, type DatabaseName } from '../../helpers/pg.js';
import { startServer, type StartOptions, type TestServer } from '../../helpers/server.js';
import type { FakeStripe } from '../../helpers/stripe.js';
import { loginHeaders } from '../../helpers/users.js';

export const ADMIN = { ADMIN_EMAIL: 'cashier@example.com', ADMIN_PASSWORD: 'cashier-password-123' };

export interface PaymentServer extends TestServer {
  admin: { authorization: string };
}

export { DATABASES, type DatabaseName } from '../../helpers/pg.js';

/**
 * A Kiln whose STRIPE_* settings point at `stripe` (override or unset them in
 * `env`), with an admin signed in; on PostgreSQL, over a database of its own
 * that closing drops.
 */
export async function startPayments(stripe: FakeStripe | null, env: Env = {}, database: DatabaseName = 'SQLite', options: StartOptions = {}): Promise<PaymentServer> {
  const pg = database === 'PostgreSQL' ? await createTestDatabase() : null;
  const started = await startServer({ ...ADMIN, ...(stripe?.env ?? {}), ...(pg ? { DATABASE_URL: pg.url } : {}), ...env }, options);
  const server: TestServer = {
    ...started,
    async close() {
      await started.close();
      await pg?.drop();
    },
  };
  try {
    return Object.assign(server, { admin: await loginHeaders(server.url, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD) });
  } catch (err) {
    await server.close();
    throw err;
  }
}

export interface OrderSpec {
  totalMinor?: number;
  currency?: string;
  status?: string;
}

/** An order row as the shop writes one (its lines do not matter to payments). */
export async function insertOrder(server: TestServer, userId: string, spec: OrderSpec = {}): Promise<string> {
  const orderId = newId();
  const now = new Date().toISOString();
  await server.ctx.db.kysely
    .insertInto('orders')
    .values({
      order_id: orderId,
      user_id: userId,
      total_minor: spec.totalMinor ?? 4990,
      currency: spec.currency ?? 'EUR',
      status: spec.status ?? 'pending',
      stripe_payment_intent_id: null,
      custom_order_id: null,
      created_at: now,
      updated_at: now,
    })
    .execute();
  return orderId;
}

export async function orderRow(server: TestServer, orderId: string) {
  return server.ctx.db.kysely.selectFrom('orders').selectAll().where('order_id', '=', orderId).executeTakeFirstOrThrow();
}

export async function paymentRows(server: TestServer) {
  return server.ctx.db.kysely.selectFrom('payments').selectAll().orderBy('created_at').execute();
}

export async function setOrderStatus(server: TestServer, orderId: string, status: string): Promise<void> {
  await server.ctx.db.kysely.updateTable('orders').set({ status }).where('order_id', '=', orderId).execute();
}

export interface Answer<T> {
  status: number;
  type: string | null;
  body: T;
}

/** A JSON request (`body` as an object, or a string sent as it is); the answer parsed. */
export async function call<T = Record<string, unknown>>(server: TestServer, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer<T>> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), body: (text ? JSON.parse(text) : null) as T };
}

export interface Problem {
  status: number;
  code: string;
  detail: string;
  errors?: Array<{ field: string; message: string }>;
}

export function expectProblem(answer: Answer<unknown>, status: number, code: string): Problem {
  expect(answer.status, JSON.stringify(answer.body)).toBe(status);
  expect(answer.type).toContain('application/problem+json');
  const problem = answer.body as Problem;
  expect(problem.code).toBe(code);
  expect(problem.detail).toMatch(/\.$/);
  return problem;
}

export interface IntentJson {
  payment_id: string;
  order_id: string;
  client_secret: string;
  amount: string;
  currency: string;
  status: string;
}

/** A payment as the server shows it. */
export type { PaymentView as PaymentJson } from '../../../src/modules/payments/service.js';

/** The stored intent id of a payment. */
export async function intentIdOf(server: TestServer, paymentId: string): Promise<string> {
  const row = await server.ctx.db.kysely.selectFrom('payments').select('intent_id').where('payment_id', '=', paymentId).executeTakeFirstOrThrow();
  return row.intent_id;
}
