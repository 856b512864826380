/**
 * The whole purchase through the shop's own API: a product, an order of it,
 * a payment of the order, Stripe's webhook, and the order confirmed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { startFakeStripe, type FakeStripe } from '../../helpers/stripe.js';
import { call, intentIdOf, startPayments, type IntentJson, type PaymentServer } from './helpers.js';

interface OrderJson {
  id: string;
  total_amount: string;
  currency: string;
  status: string;
  stripe_payment_intent_id: string | null;
}

describe('a purchase through the shop', () => {
  let stripe: FakeStripe;
  let server: PaymentServer;
  let buyer: TestUser;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    server = await startPayments(stripe);
    buyer = await registerUser(server.url);
  });
  afterAll(async () => {
    await server.close();
    await stripe.close();
  });

  it('pays the total the server priced, and the webhook confirms the order', async () => {
    const product = await call<{ id: string }>(server, 'POST', '/products', server.admin, { name: 'Mug', price: '19.95', currency: 'EUR', stock_quantity: 5 });
    expect(product.status).toBe(201);
    const order = await call<OrderJson>(server, 'POST', '/orders', buyer.headers, { items: [{ product_id: product.body.id, quantity: 2 }] });
    expect(order.status).toBe(201);
    expect(order.body).toMatchObject({ total_amount: '39.90', currency: 'EUR', status: 'pending' });

    const intent = await call<IntentJson>(server, 'POST', '/payments/create-intent', buyer.headers, { order_id: order.body.id });
    expect(intent.status).toBe(201);
    expect(intent.body).toMatchObject({ amount: '39.90', currency: 'EUR' });
    const intentId = await intentIdOf(server, intent.body.payment_id);
    expect(stripe.intents.get(intentId)).toMatchObject({ amount: 3990, currency: 'eur' });

    stripe.succeed(intentId);
    const event = stripe.event('payment_intent.succeeded', intentId);
    const delivered = await call(server, 'POST', '/payments/webhook', { 'stripe-signature': stripe.sign(event.body) }, event.body);
    expect(delivered.body).toMatchObject({ outcome: 'applied' });

    const after = await call<OrderJson>(server, 'GET', `/orders/${order.body.id}`, buyer.headers);
    expect(after.body).toMatchObject({ status: 'confirmed', stripe_payment_intent_id: intentId });
  });
});
