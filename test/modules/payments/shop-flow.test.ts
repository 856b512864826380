/**
 * The whole purchase through the shop's own API: a product, an order of it,
 * a payment of the order, Stripe's webhook, and the order confirmed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { logDirectory } from '../../helpers/logs.js';
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

  /** A pending order of one mug, with an intent made for it; its ids. */
  async function orderWithIntent(): Promise<{ orderId: string; paymentId: string; intentId: string }> {
    const product = await call<{ id: string }>(server, 'POST', '/products', server.admin, { name: 'Bowl', price: '12.00', stock_quantity: 5 });
    const order = await call<OrderJson>(server, 'POST', '/orders', buyer.headers, { items: [{ product_id: product.body.id, quantity: 1 }] });
    const intent = await call<IntentJson>(server, 'POST', '/payments/create-intent', buyer.headers, { order_id: order.body.id });
    expect(intent.status).toBe(201);
    return { orderId: order.body.id, paymentId: intent.body.payment_id, intentId: await intentIdOf(server, intent.body.payment_id) };
  }

  it('cancelling an order cancels its open intent at Stripe, so it cannot be paid any more', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    const cancelled = await call<OrderJson>(server, 'PUT', `/orders/${orderId}/status`, server.admin, { status: 'cancelled' });
    expect(cancelled).toMatchObject({ status: 200, body: { status: 'cancelled' } });
    expect(stripe.intents.get(intentId)).toMatchObject({ status: 'canceled', cancellation_reason: 'abandoned' });
    const payment = await call<{ status: string; order_status: string }>(server, 'GET', `/payments/${paymentId}`, buyer.headers);
    expect(payment.body).toMatchObject({ status: 'canceled', order_status: 'cancelled' });
  });

  it('an order whose intent Stripe will not cancel (paid meanwhile) is cancelled all the same; the payment says succeeded', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    stripe.succeed(intentId); // paid at Stripe, and no webhook has told Kiln yet
    const cancelled = await call<OrderJson>(server, 'PUT', `/orders/${orderId}/status`, server.admin, { status: 'cancelled' });
    expect(cancelled).toMatchObject({ status: 200, body: { status: 'cancelled' } });
    expect(stripe.intents.get(intentId)?.status).toBe('succeeded');
    const payment = await call<{ status: string; order_status: string }>(server, 'GET', `/payments/${paymentId}`, buyer.headers);
    expect(payment.body).toMatchObject({ status: 'succeeded', order_status: 'cancelled' });
  });

  it('an order whose payment is processing is cancelled all the same, its stock back; the log says to refund the money when it arrives', async () => {
    const log = logDirectory<{ msg: string; orderId?: string }>();
    const own = await startPayments(stripe, log.env);
    let closed = false;
    try {
      const ownBuyer = await registerUser(own.url);
      const product = await call<{ id: string }>(own, 'POST', '/products', own.admin, { name: 'Jug', price: '30.00', stock_quantity: 1 });
      const order = await call<OrderJson>(own, 'POST', '/orders', ownBuyer.headers, { items: [{ product_id: product.body.id, quantity: 1 }] });
      const intent = await call<IntentJson>(own, 'POST', '/payments/create-intent', ownBuyer.headers, { order_id: order.body.id });
      const intentId = await intentIdOf(own, intent.body.payment_id);
      stripe.process(intentId); // a debit on its way, and no webhook has told Kiln yet

      const cancelled = await call<OrderJson>(own, 'PUT', `/orders/${order.body.id}/status`, own.admin, { status: 'cancelled' });
      expect(cancelled).toMatchObject({ status: 200, body: { status: 'cancelled' } });
      expect(stripe.intents.get(intentId)?.status).toBe('processing');
      const payment = await call<{ status: string; order_status: string }>(own, 'GET', `/payments/${intent.body.payment_id}`, ownBuyer.headers);
      expect(payment.body).toMatchObject({ status: 'processing', order_status: 'cancelled' });
      expect((await call<{ stock_quantity: number }>(own, 'GET', `/products/${product.body.id}`)).body.stock_quantity).toBe(1);
      await own.close();
      closed = true;
      const warned = log.lines().filter((l) => l.msg.startsWith('cancelled an order whose payment is processing'));
      expect(warned.map((l) => l.orderId)).toEqual([order.body.id]);
    } finally {
      if (!closed) await own.close();
      log.remove();
    }
  });

  it('Stripe failing to cancel leaves the order cancelled (the cancel is logged for a person)', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    stripe.failNext.push({ status: 500, type: 'api_error', message: 'Something went wrong on Stripe\'s end.' });
    const cancelled = await call<OrderJson>(server, 'PUT', `/orders/${orderId}/status`, server.admin, { status: 'cancelled' });
    expect(cancelled).toMatchObject({ status: 200, body: { status: 'cancelled' } });
    expect(stripe.intents.get(intentId)?.status).toBe('requires_payment_method');
    expect((await call<{ status: string }>(server, 'GET', `/payments/${paymentId}`, buyer.headers)).body.status).toBe('requires_payment_method');
  });
});
