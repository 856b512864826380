import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { startFakeStripe, WEBHOOK_SECRET, type FakeStripe } from '../../helpers/stripe.js';
import { WEBHOOK_BODY_LIMIT } from '../../../src/modules/payments/routes.js';
import { DATABASES, call, expectProblem, insertOrder, intentIdOf, orderRow, setOrderStatus, startPayments, type IntentJson, type PaymentServer } from './helpers.js';

interface WebhookJson {
  received: true;
  event_id: string;
  outcome: 'applied' | 'duplicate' | 'ignored';
}

for (const { name, skip } of DATABASES) describe.skipIf(skip)(`POST /payments/webhook (${name})`, () => {
  let stripe: FakeStripe;
  let server: PaymentServer;
  let buyer: TestUser;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    server = await startPayments(stripe, {}, name);
    buyer = await registerUser(server.url);
  });
  afterAll(async () => {
    await server.close();
    await stripe.close();
  });

  /** A pending order with an intent: its ids. */
  async function orderWithIntent(spec: { totalMinor?: number } = {}): Promise<{ orderId: string; paymentId: string; intentId: string }> {
    const orderId = await insertOrder(server, buyer.id, spec);
    const answer = await call<IntentJson>(server, 'POST', '/payments/create-intent', buyer.headers, { order_id: orderId });
    if (answer.status !== 201) throw new Error(`create-intent: ${answer.status}`);
    return { orderId, paymentId: answer.body.payment_id, intentId: await intentIdOf(server, answer.body.payment_id) };
  }

  /** Delivers `body` as Stripe does (its exact bytes), with `signature` as the Stripe-Signature header (null: none). */
  async function deliver(body: string, signature: string | null = stripe.sign(body), type = 'application/json; charset=utf-8') {
    const headers: Record<string, string> = { 'content-type': type };
    if (signature !== null) headers['stripe-signature'] = signature;
    return call<WebhookJson>(server, 'POST', '/payments/webhook', headers, body);
  }

  async function payment(paymentId: string) {
    return server.ctx.db.kysely.selectFrom('payments').selectAll().where('payment_id', '=', paymentId).executeTakeFirstOrThrow();
  }

  async function eventCount(): Promise<number> {
    const rows = await server.ctx.db.kysely.selectFrom('payment_events').select('event_id').execute();
    return rows.length;
  }

  it('payment_intent.succeeded marks the payment succeeded and confirms the order', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    stripe.succeed(intentId);
    const event = stripe.event('payment_intent.succeeded', intentId);
    const answer = await deliver(event.body);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ received: true, event_id: event.id, outcome: 'applied' });
    expect((await payment(paymentId)).status).toBe('succeeded');
    expect((await orderRow(server, orderId)).status).toBe('confirmed');
  });

  it('the same event delivered twice changes nothing the second time', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    stripe.succeed(intentId);
    const event = stripe.event('payment_intent.succeeded', intentId);
    expect((await deliver(event.body)).body.outcome).toBe('applied');
    const paymentAfter = await payment(paymentId);
    const orderAfter = await orderRow(server, orderId);
    const events = await eventCount();

    const again = await deliver(event.body, stripe.sign(event.body));
    expect(again.status).toBe(200);
    expect(again.body.outcome).toBe('duplicate');
    expect(await payment(paymentId)).toEqual(paymentAfter);
    expect(await orderRow(server, orderId)).toEqual(orderAfter);
    expect(await eventCount()).toBe(events);
  });

  it('a redelivered older event does not bring back what it said', async () => {
    const { paymentId, intentId } = await orderWithIntent();
    stripe.fail(intentId, 'insufficient_funds', 'Your card has insufficient funds.');
    const first = stripe.event('payment_intent.payment_failed', intentId);
    expect((await deliver(first.body)).body.outcome).toBe('applied');
    expect((await payment(paymentId)).last_error_code).toBe('insufficient_funds');

    stripe.fail(intentId, 'expired_card', 'Your card has expired.');
    const second = stripe.event('payment_intent.payment_failed', intentId);
    expect((await deliver(second.body)).body.outcome).toBe('applied');
    const latest = await payment(paymentId);
    expect(latest).toMatchObject({ status: 'requires_payment_method', last_error_code: 'expired_card', last_error_message: 'Your card has expired.' });

    // Stripe retries the first delivery (its answer was lost): applied once already, so nothing moves.
    expect((await deliver(first.body)).body.outcome).toBe('duplicate');
    expect(await payment(paymentId)).toEqual(latest);
  });

  it('a late failure event cannot undo a success', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    stripe.fail(intentId);
    const failed = stripe.event('payment_intent.payment_failed', intentId);
    stripe.succeed(intentId);
    const succeeded = stripe.event('payment_intent.succeeded', intentId);
    expect((await deliver(succeeded.body)).body.outcome).toBe('applied');
    // Recorded (a redelivery is a duplicate), but it moved nothing, and says so.
    expect((await deliver(failed.body)).body.outcome).toBe('unchanged');
    expect((await deliver(failed.body, stripe.sign(failed.body))).body.outcome).toBe('duplicate');
    expect(await payment(paymentId)).toMatchObject({ status: 'succeeded', last_error_code: null });
    expect((await orderRow(server, orderId)).status).toBe('confirmed');
  });

  it('payment_intent.payment_failed and payment_intent.canceled update the payment; the order stays pending', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    stripe.fail(intentId, 'card_velocity_exceeded', 'Too many attempts.');
    await deliver(stripe.event('payment_intent.payment_failed', intentId).body);
    expect(await payment(paymentId)).toMatchObject({ status: 'requires_payment_method', last_error_code: 'card_velocity_exceeded', last_error_message: 'Too many attempts.' });

    stripe.cancel(intentId);
    await deliver(stripe.event('payment_intent.canceled', intentId).body);
    expect((await payment(paymentId)).status).toBe('canceled');
    expect((await orderRow(server, orderId)).status).toBe('pending');
  });

  it('a payment that succeeds after its order was cancelled leaves the order cancelled', async () => {
    const { orderId, paymentId, intentId } = await orderWithIntent();
    await setOrderStatus(server, orderId, 'cancelled');
    stripe.succeed(intentId);
    expect((await deliver(stripe.event('payment_intent.succeeded', intentId).body)).body.outcome).toBe('applied');
    expect((await payment(paymentId)).status).toBe('succeeded');
    expect((await orderRow(server, orderId)).status).toBe('cancelled');
  });

  describe('refuses a delivery whose signature does not hold (400, nothing changes)', () => {
    const now = () => Math.floor(Date.now() / 1000);
    const cases: Array<[string, (body: string) => { body: string; signature: string | null }]> = [
      ['signed with another secret', (body) => ({ body, signature: stripe.sign(body, 'whsec_someoneElse') })],
      ['no Stripe-Signature header', (body) => ({ body, signature: null })],
      ['a header that is not a signature', (body) => ({ body, signature: 'garbage' })],
      ['a body changed after signing', (body) => ({ body: body.replace('"livemode": false', '"livemode": true'), signature: stripe.sign(body) })],
      ['signed an hour ago (a replay)', (body) => ({ body, signature: stripe.sign(body, WEBHOOK_SECRET, now() - 3600) })],
    ];
    for (const [name, make] of cases) {
      it(name, async () => {
        const { orderId, paymentId, intentId } = await orderWithIntent();
        stripe.succeed(intentId);
        const paymentBefore = await payment(paymentId);
        const events = await eventCount();
        const { body, signature } = make(stripe.event('payment_intent.succeeded', intentId).body);
        expectProblem(await deliver(body, signature), 400, 'invalid_signature');
        expect(await payment(paymentId)).toEqual(paymentBefore);
        expect((await orderRow(server, orderId)).status).toBe('pending');
        expect(await eventCount()).toBe(events);
      });
    }
  });

  it('answers 200 and ignores event types it does not follow', async () => {
    const { paymentId, intentId } = await orderWithIntent();
    const paymentBefore = await payment(paymentId);
    const events = await eventCount();
    const body = JSON.stringify({ id: 'evt_customer1', object: 'event', type: 'customer.created', data: { object: { id: 'cus_1', object: 'customer' } } });
    expect((await deliver(body)).body).toEqual({ received: true, event_id: 'evt_customer1', outcome: 'ignored' });
    const created = stripe.event('payment_intent.created', intentId);
    expect((await deliver(created.body)).body.outcome).toBe('ignored');
    expect(await payment(paymentId)).toEqual(paymentBefore);
    expect(await eventCount()).toBe(events);
  });

  it('answers 200 and ignores an intent Kiln did not make', async () => {
    const orderId = await insertOrder(server, buyer.id);
    // Made at Stripe by something else on the same account.
    const res = await fetch(`${stripe.baseUrl}/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stripe.env.STRIPE_KEY}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ amount: '4990', currency: 'eur', 'metadata[kiln_order_id]': orderId }).toString(),
    });
    const foreign = (await res.json()) as { id: string };
    stripe.succeed(foreign.id);
    expect((await deliver(stripe.event('payment_intent.succeeded', foreign.id).body)).body.outcome).toBe('ignored');
    expect((await orderRow(server, orderId)).status).toBe('pending');
  });

  it('answers 413 for a body over the limit and 415 for one that is not JSON, changing nothing', async () => {
    const events = await eventCount();
    const big = JSON.stringify({ id: 'evt_big', type: 'payment_intent.succeeded', padding: 'x'.repeat(WEBHOOK_BODY_LIMIT) });
    expectProblem(await deliver(big), 413, 'body_too_large');
    expectProblem(await deliver('id=evt_1', stripe.sign('id=evt_1'), 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
    expect(await eventCount()).toBe(events);
  });

  it('answers 400 for a signed body that is not an event', async () => {
    expectProblem(await deliver('{"not": "an event"'), 400, 'invalid_event');
    expectProblem(await deliver('[1, 2]'), 400, 'invalid_event');
    expectProblem(await deliver('null'), 400, 'invalid_event');
    expectProblem(await deliver('42'), 400, 'invalid_event');
    expectProblem(await deliver('"evt"'), 400, 'invalid_event');
  });

  it.each([
    ['an empty id', { id: '', type: 'payment_intent.succeeded' }],
    ['an empty type', { id: 'evt_no_type', type: '' }],
    ['a numeric id', { id: 7, type: 'payment_intent.succeeded' }],
  ])('answers 400 invalid_event for a signed event with %s: an id names one delivery, and "" would name them all', async (_what, fields) => {
    const events = await eventCount();
    // A whole PaymentIntent (one Kiln did not make): only the event's own fields are wrong.
    const intent = { object: 'payment_intent', id: 'pi_not_ours', status: 'succeeded', amount: 990, currency: 'eur', client_secret: null };
    expectProblem(await deliver(JSON.stringify({ object: 'event', data: { object: intent }, ...fields })), 400, 'invalid_event');
    expect(await eventCount()).toBe(events);
  });

  it.each([
    ['an object without currency or amount', { object: 'payment_intent', id: 'pi_unknown_x' }],
    ['a null object', null],
    ['an empty object', {}],
    ['an object that does not say what it is', { id: 'pi_unknown_y', status: 'succeeded' }],
    ['no data at all', undefined],
  ])('answers 400 invalid_event for a signed payment_intent event carrying %s, changing nothing', async (_what, object) => {
    const events = await eventCount();
    const event = { id: `evt_bad_${events}`, object: 'event', type: 'payment_intent.succeeded', ...(object === undefined ? {} : { data: { object } }) };
    expectProblem(await deliver(JSON.stringify(event)), 400, 'invalid_event');
    expect(await eventCount()).toBe(events);
  });

  it('ignores a signed payment_intent event whose object says it is another kind of object', async () => {
    const events = await eventCount();
    const body = JSON.stringify({ id: `evt_charge_${events}`, object: 'event', type: 'payment_intent.succeeded', data: { object: { object: 'charge', id: 'ch_1' } } });
    expect((await deliver(body)).body.outcome).toBe('ignored');
  });

  it('ignores a signed event of another type whatever its object', async () => {
    const body = JSON.stringify({ id: 'evt_other_type', object: 'event', type: 'charge.refunded', data: { object: null } });
    expect((await deliver(body)).body.outcome).toBe('ignored');
  });
});

describe('POST /payments/webhook without STRIPE_WEBHOOK_SECRET', () => {
  it('answers 503 naming STRIPE_WEBHOOK_SECRET, while the other payment routes work', async () => {
    const stripe = await startFakeStripe();
    const server = await startPayments(stripe, { STRIPE_WEBHOOK_SECRET: '' });
    try {
      const body = JSON.stringify({ id: 'evt_1', type: 'payment_intent.succeeded' });
      const problem = expectProblem(await call(server, 'POST', '/payments/webhook', { 'stripe-signature': stripe.sign(body) }, body), 503, 'webhooks_not_configured');
      expect(problem.detail).toContain('set STRIPE_WEBHOOK_SECRET');
      const user = await registerUser(server.url);
      const orderId = await insertOrder(server, user.id);
      expect((await call(server, 'POST', '/payments/create-intent', user.headers, { order_id: orderId })).status).toBe(201);
    } finally {
      await server.close();
      await stripe.close();
    }
  });
});
