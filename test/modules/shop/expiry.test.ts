/**
 * Unpaid orders give their stock back (docs/shop.md): a pending order
 * unchanged for ORDER_HOLD_MINUTES is cancelled by the sweep, its open
 * intent canceled at Stripe first, unless money is on its way. Time is moved
 * by the server's injected clock; the sweep is the one `kiln serve` runs
 * every minute, called here at the moment a test chooses.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { newId } from '../../../src/ids.js';
import { PaymentService } from '../../../src/modules/payments/service.js';
import { SWEEP_INTERVAL_MS, UnpaidOrderExpiry } from '../../../src/modules/shop/expiry.js';
import { OrderService } from '../../../src/modules/shop/orders.js';
import { TestClock } from '../../auth/helpers.js';
import { startFakeStripe, WEBHOOK_SECRET, type FakeStripe } from '../../helpers/stripe.js';
import { registerUser } from '../../helpers/users.js';
import { call, DATABASES, intentIdOf, orderRow, startPayments, type IntentJson, type PaymentServer } from '../payments/helpers.js';

/** The static service key (API_KEY): an admin whose credentials do not run out while the clock moves on. */
const ADMIN_KEY = { 'x-api-key': 'kiln-expiry-test-admin-key-0123456789' };
const HOLD = 60;

/** The sweep exactly as shop/routes.ts wires it, over the server's own context. */
function sweeperOf(server: PaymentServer): UnpaidOrderExpiry {
  const payments = new PaymentService(server.ctx);
  return new UnpaidOrderExpiry(server.ctx, new OrderService(server.ctx, (orderId) => payments.releaseCancelledOrder(orderId)), payments);
}

for (const { name, skip } of DATABASES) describe.skipIf(skip)(`unpaid orders expire (${name})`, () => {
  const clock = new TestClock();
  let stripe: FakeStripe;
  let server: PaymentServer;
  let buyer: { 'x-api-key': string };
  let sweeper: UnpaidOrderExpiry;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    server = await startPayments(stripe, { API_KEY: ADMIN_KEY['x-api-key'], ORDER_HOLD_MINUTES: String(HOLD) }, name, { clock });
    // An API key: it acts as the buyer however far the clock moves (an access token lasts 15 minutes).
    const user = await registerUser(server.url);
    const key = await call<{ key: string }>(server, 'POST', '/auth/api-keys', user.headers, { name: 'checkout' });
    buyer = { 'x-api-key': key.body.key };
    sweeper = sweeperOf(server);
  });
  afterAll(async () => {
    await server?.close();
    await stripe?.close();
  });

  async function product(stock: number, price = '12.00'): Promise<string> {
    const made = await call<{ id: string }>(server, 'POST', '/products', ADMIN_KEY, { name: 'Vase', price, stock_quantity: stock });
    expect(made.status).toBe(201);
    return made.body.id;
  }
  async function order(productId: string, quantity = 1): Promise<string> {
    const made = await call<{ id: string }>(server, 'POST', '/orders', buyer, { items: [{ product_id: productId, quantity }] });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    return made.body.id;
  }
  async function intentFor(orderId: string): Promise<{ paymentId: string; intentId: string }> {
    const made = await call<IntentJson>(server, 'POST', '/payments/create-intent', buyer, { order_id: orderId });
    expect(made.status).toBe(201);
    return { paymentId: made.body.payment_id, intentId: await intentIdOf(server, made.body.payment_id) };
  }
  /** The last vase, ordered, with an intent made for the order: its ids. */
  async function lastVaseWithIntent(): Promise<{ vase: string; id: string; paymentId: string; intentId: string }> {
    const vase = await product(1);
    const id = await order(vase);
    return { vase, id, ...(await intentFor(id)) };
  }
  async function stock(productId: string): Promise<number> {
    return (await call<{ stock_quantity: number }>(server, 'GET', `/products/${productId}`, ADMIN_KEY)).body.stock_quantity;
  }
  const statusOf = async (orderId: string): Promise<string> => (await orderRow(server, orderId)).status;
  async function paymentStatus(paymentId: string): Promise<string> {
    return (await server.ctx.db.kysely.selectFrom('payments').select('status').where('payment_id', '=', paymentId).executeTakeFirstOrThrow()).status;
  }
  /** Stripe tells Kiln what became of an intent, signed at Kiln's time (the age check uses Kiln's clock). */
  async function webhook(type: string, intentId: string): Promise<void> {
    const event = stripe.event(type, intentId);
    const signature = stripe.sign(event.body, WEBHOOK_SECRET, Math.floor(clock.now().getTime() / 1000));
    const delivered = await call(server, 'POST', '/payments/webhook', { 'stripe-signature': signature }, event.body);
    expect(delivered.body).toMatchObject({ outcome: 'applied' });
  }
  const cancelsSent = (intentId: string): number => stripe.received.filter((r) => r.method === 'POST' && r.path === `/v1/payment_intents/${intentId}/cancel`).length;

  it('cancels an order unpaid for ORDER_HOLD_MINUTES and returns its stock; a younger order keeps its hold', async () => {
    const vase = await product(5);
    const old = await order(vase, 2);
    clock.advanceMinutes(30);
    const young = await order(vase, 1);
    expect(await stock(vase)).toBe(2);
    clock.advanceMinutes(HOLD - 30 + 0.5);

    expect(await sweeper.sweep()).toBe(1);
    expect(await statusOf(old)).toBe('cancelled');
    expect(await statusOf(young)).toBe('pending');
    expect(await stock(vase)).toBe(4);
    // Swept again: nothing more, and the stock is not given back twice.
    expect(await sweeper.sweep()).toBe(0);
    expect(await stock(vase)).toBe(4);

    clock.advanceMinutes(30);
    expect(await sweeper.sweep()).toBe(1);
    expect(await stock(vase)).toBe(5);
    // The buyer sees it cancelled, like an admin's cancel.
    expect((await call(server, 'GET', `/orders/${young}`, buyer)).body).toMatchObject({ status: 'cancelled' });
  });

  it("cancels the order's open intent at Stripe first, so it cannot be paid after its stock went back", async () => {
    const { vase, id, paymentId, intentId } = await lastVaseWithIntent();
    clock.advanceMinutes(HOLD + 1);

    expect(await sweeper.sweep()).toBe(1);
    expect(stripe.intents.get(intentId)).toMatchObject({ status: 'canceled', cancellation_reason: 'abandoned' });
    expect(await paymentStatus(paymentId)).toBe('canceled');
    expect(await statusOf(id)).toBe('cancelled');
    expect(await stock(vase)).toBe(1);
  });

  it('restarts the hold when the buyer starts paying or a payment attempt fails', async () => {
    const vase = await product(2);
    const id = await order(vase);
    clock.advanceMinutes(HOLD - 10);
    const { intentId } = await intentFor(id);
    clock.advanceMinutes(15); // the order is 65 minutes old, its intent 15
    expect(await sweeper.sweep()).toBe(0);
    expect(await statusOf(id)).toBe('pending');
    expect(cancelsSent(intentId)).toBe(0);

    clock.advanceMinutes(HOLD - 20); // the intent is 55 minutes old when the bank declines
    stripe.fail(intentId);
    await webhook('payment_intent.payment_failed', intentId);
    clock.advanceMinutes(10);
    expect(await sweeper.sweep()).toBe(0);
    expect(cancelsSent(intentId)).toBe(0);

    clock.advanceMinutes(HOLD);
    expect(await sweeper.sweep()).toBe(1);
    expect(await statusOf(id)).toBe('cancelled');
    expect(stripe.intents.get(intentId)?.status).toBe('canceled');
    expect(await stock(vase)).toBe(2);
  });

  it('keeps an order whose payment is processing, whether Kiln was told or learns it from Stripe refusing the cancel', async () => {
    const vase = await product(2);
    const told = await order(vase);
    const toldPayment = await intentFor(told);
    stripe.process(toldPayment.intentId);
    await webhook('payment_intent.processing', toldPayment.intentId);
    const untold = await order(vase);
    const untoldPayment = await intentFor(untold);
    stripe.process(untoldPayment.intentId);
    clock.advanceMinutes(HOLD + 1);

    expect(await sweeper.sweep()).toBe(0);
    expect(await statusOf(told)).toBe('pending');
    expect(await statusOf(untold)).toBe('pending');
    // Known to be processing: Stripe is not even asked.
    expect(cancelsSent(toldPayment.intentId)).toBe(0);
    expect(cancelsSent(untoldPayment.intentId)).toBe(1);
    expect(await paymentStatus(untoldPayment.paymentId)).toBe('processing');
    expect(await stock(vase)).toBe(0);
  });

  it('confirms, rather than cancels, an order paid at Stripe that Kiln had not heard of', async () => {
    const { vase, id, paymentId, intentId } = await lastVaseWithIntent();
    stripe.succeed(intentId); // no webhook, no confirm
    clock.advanceMinutes(HOLD + 1);

    expect(await sweeper.sweep()).toBe(0);
    expect(await statusOf(id)).toBe('confirmed');
    expect(await paymentStatus(paymentId)).toBe('succeeded');
    expect(await stock(vase)).toBe(0);
  });

  it('leaves the order pending while Stripe cannot be reached, and cancels it once Stripe answers', async () => {
    const { vase, id, intentId } = await lastVaseWithIntent();
    clock.advanceMinutes(HOLD + 1);

    stripe.failNext.push({ status: 500, type: 'api_error', message: 'Something went wrong on our end.' });
    expect(await sweeper.sweep()).toBe(0);
    expect(await statusOf(id)).toBe('pending');
    expect(stripe.intents.get(intentId)?.status).toBe('requires_payment_method');
    expect(await stock(vase)).toBe(0);

    expect(await sweeper.sweep()).toBe(1);
    expect(await statusOf(id)).toBe('cancelled');
    expect(await stock(vase)).toBe(1);
  });

  it('leaves alone an order with nothing to pay and orders past pending', async () => {
    const free = await product(3, '0.00');
    const gift = await order(free);
    const vase = await product(3);
    const confirmed = await order(vase);
    expect((await call(server, 'PUT', `/orders/${confirmed}/status`, ADMIN_KEY, { status: 'confirmed' })).status).toBe(200);
    clock.advanceMinutes(HOLD * 24);

    expect(await sweeper.sweep()).toBe(0);
    expect(await statusOf(gift)).toBe('pending');
    expect(await statusOf(confirmed)).toBe('confirmed');
    expect([await stock(free), await stock(vase)]).toEqual([2, 2]);
  });

  it('reaches an expired order behind more than a page of orders whose payments are processing', async () => {
    const vase = await product(1);
    const behind = await order(vase);
    const db = server.ctx.db.kysely;
    // 100 older orders, each with a payment on its way: a sweep reads 100 at a time.
    const longAgo = new Date(clock.now().getTime() - 10 * HOLD * 60_000).toISOString();
    for (let i = 0; i < 100; i += 1) {
      const orderId = newId();
      await db
        .insertInto('orders')
        .values({ order_id: orderId, user_id: 'someone', total_minor: 990, currency: 'EUR', status: 'pending', stripe_payment_intent_id: null, custom_order_id: null, created_at: longAgo, updated_at: longAgo })
        .execute();
      await db
        .insertInto('payments')
        .values({ payment_id: newId(), order_id: orderId, user_id: 'someone', intent_id: `pi_waiting${i}`, amount_minor: 990, currency: 'EUR', status: 'processing', last_error_code: null, last_error_message: null, created_at: longAgo, updated_at: longAgo })
        .execute();
    }
    clock.advanceMinutes(HOLD + 1);

    expect(await sweeper.sweep()).toBe(1);
    expect(await statusOf(behind)).toBe('cancelled');
    expect(await stock(vase)).toBe(1);
    const waiting = await db.selectFrom('orders').select((eb) => eb.fn.countAll<number | string>().as('n')).where('user_id', '=', 'someone').where('status', '=', 'pending').executeTakeFirstOrThrow();
    expect(Number(waiting.n)).toBe(100);
  });

  it('keeps an order whose buyer starts paying while the sweep is deciding', async () => {
    const vase = await product(1);
    const id = await order(vase);
    clock.advanceMinutes(HOLD + 1);
    const payments = new PaymentService(server.ctx);
    let intentId = '';
    // Between the sweep's read of stale orders and its cancel, the buyer opens the checkout.
    const racing = new UnpaidOrderExpiry(server.ctx, new OrderService(server.ctx, (orderId) => payments.releaseCancelledOrder(orderId)), {
      async releaseUnpaidOrder(orderId, before) {
        const released = await payments.releaseUnpaidOrder(orderId, before);
        if (orderId === id) ({ intentId } = await intentFor(orderId));
        return released;
      },
    });

    expect(await racing.sweep()).toBe(0);
    expect(await statusOf(id)).toBe('pending');
    expect(stripe.intents.get(intentId)?.status).toBe('requires_payment_method');
    expect(await stock(vase)).toBe(0);
    // Out of the way of the next tests' counts.
    expect((await call(server, 'PUT', `/orders/${id}/status`, ADMIN_KEY, { status: 'cancelled' })).status).toBe(200);
  });

  it('two processes sweeping at once cancel an order once and return its stock once', async () => {
    const vase = await product(4);
    const ids = [await order(vase), await order(vase, 3)];
    clock.advanceMinutes(HOLD + 1);

    const [a, b] = await Promise.all([sweeper.sweep(), sweeperOf(server).sweep()]);
    expect(a + b).toBe(2);
    expect(await Promise.all(ids.map(statusOf))).toEqual(['cancelled', 'cancelled']);
    expect(await stock(vase)).toBe(4);
  });
});

describe('the sweep in a running server', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs every minute once ORDER_HOLD_MINUTES is set, and not at all at 0', async () => {
    // Only the interval is faked: requests, the database and Stripe's fake run in real time.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const clock = new TestClock();
    const timersBefore = vi.getTimerCount();
    const off = await startPayments(null, { API_KEY: ADMIN_KEY['x-api-key'], ORDER_HOLD_MINUTES: '0' }, 'SQLite', { clock });
    const timersWithout = vi.getTimerCount();
    await off.close();
    const server = await startPayments(null, { API_KEY: ADMIN_KEY['x-api-key'], ORDER_HOLD_MINUTES: '1' }, 'SQLite', { clock });
    try {
      expect(vi.getTimerCount()).toBe(timersWithout + 1);
      const vase = await call<{ id: string }>(server, 'POST', '/products', ADMIN_KEY, { name: 'Vase', price: '5.00', stock_quantity: 1 });
      const buyer = await registerUser(server.url);
      const placed = await call<{ id: string }>(server, 'POST', '/orders', buyer.headers, { items: [{ product_id: vase.body.id, quantity: 1 }] });
      clock.advanceMinutes(2);
      expect((await orderRow(server, placed.body.id)).status).toBe('pending');

      // A minute, as written (docs/operations.md): not whatever SWEEP_INTERVAL_MS says.
      expect(SWEEP_INTERVAL_MS).toBe(60_000);
      vi.advanceTimersByTime(60_000);
      await vi.waitFor(async () => expect((await orderRow(server, placed.body.id)).status).toBe('cancelled'), { timeout: 5000, interval: 20 });
      expect((await call<{ stock_quantity: number }>(server, 'GET', `/products/${vase.body.id}`)).body.stock_quantity).toBe(1);
    } finally {
      await server.close();
    }
    // Closing the server stops its sweep (and the hourly ones every server runs).
    expect(vi.getTimerCount()).toBe(timersBefore);
  });
});
