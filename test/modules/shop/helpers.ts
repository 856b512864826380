/** Shared pieces of the shop tests: a server with an admin, JSON calls, products made through the API. */
import type { Env } from '../../../src/config.js';
import { startServer, type StartOptions, type TestServer } from '../../helpers/server.js';
import { loginHeaders } from '../../helpers/users.js';
import type { ProductView } from '../../../src/modules/shop/product-views.js';

export const ADMIN = { ADMIN_EMAIL: 'shopkeeper@example.com', ADMIN_PASSWORD: 'shopkeeper-password-1' };

export async function startShop(env: Env = {}, options: StartOptions = {}): Promise<TestServer & { admin: Record<string, string> }> {
  const server = await startServer({ ...ADMIN, ...env }, options);
  return Object.assign(server, { admin: await loginHeaders(server.url, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD) });
}

export interface Answer<T = Record<string, unknown>> {
  status: number;
  type: string | null;
  body: T;
}

/** A JSON request; the answer's body parsed when there is one. */
export async function call<T = Record<string, unknown>>(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer<T>> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), body: (text ? JSON.parse(text) : null) as T };
}

/** A product as the API answers it: the server's own view type. */
export type ProductJson = ProductView;

export interface OrderJson {
  id: string;
  user_id: string;
  items: Array<{ product_id: string; name: string; unit_price: string; quantity: number }>;
  total_amount: string;
  currency: string;
  status: string;
  stripe_payment_intent_id: string | null;
  custom_order_id: string | null;
  created_at: string;
  updated_at: string;
}

/** Creates a product as the admin; throws unless 201. */
export async function makeProduct(base: string, admin: Record<string, string>, fields: Record<string, unknown> = {}): Promise<ProductJson> {
  const res = await call<ProductJson>(base, 'POST', '/products', admin, { name: 'Mug', price: '12.50', stock_quantity: 10, ...fields });
  if (res.status !== 201) throw new Error(`product not created: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}
