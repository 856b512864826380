import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLogLines } from '../../helpers/logs.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { startFakeStripe, type FakeStripe } from '../../helpers/stripe.js';
import { createStripeGateway, PaymentProviderFailed } from '../../../src/modules/payments/stripe.js';
import {
  DATABASES,
  call,
  expectProblem,
  insertOrder,
  intentIdOf,
  orderRow,
  paymentRows,
  setOrderStatus,
  startPayments,
  type IntentJson,
  type PaymentJson,
  type PaymentServer,
} from './helpers.js';

describe('payments without STRIPE_KEY', () => {
  let server: PaymentServer;
  let user: TestUser;
  beforeAll(async () => {
    server = await startPayments(null);
    user = await registerUser(server.url);
  });
  afterAll(() => server.close());

  it('answer 503 on every route with a sentence naming STRIPE_KEY, and change nothing', async () => {
    const orderId = await insertOrder(server, user.id);
    const answers = [
      await call(server, 'POST', '/payments/create-intent', user.headers, { order_id: orderId }),
      await call(server, 'POST', '/payments/confirm', user.headers, { payment_id: 'whatever' }),
      await call(server, 'GET', '/payments/whatever', user.headers),
      await call(server, 'POST', '/payments/webhook', { 'stripe-signature': 't=1,v1=00' }, { id: 'evt_1', type: 'payment_intent.succeeded' }),
      // Before the body is looked at: a bad one is still the 503.
      await call(server, 'POST', '/payments/create-intent', user.headers, { amount: '1.00' }),
    ];
    for (const answer of answers) {
      const problem = expectProblem(answer, 503, 'payments_not_configured');
      expect(problem.detail).toContain('set STRIPE_KEY');
    }
    expect(await paymentRows(server)).toEqual([]);
    expect((await orderRow(server, orderId)).status).toBe('pending');
  });

  it('still asks for credentials first', async () => {
    expectProblem(await call(server, 'POST', '/payments/create-intent', {}, { order_id: 'x' }), 401, 'unauthorized');
  });
});

for (const { name, skip } of DATABASES) describe.skipIf(skip)(`payments (${name})`, () => {
  let stripe: FakeStripe;
  let server: PaymentServer;
  let buyer: TestUser;
  let stranger: TestUser;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    server = await startPayments(stripe, {}, name);
    buyer = await registerUser(server.url);
    stranger = await registerUser(server.url);
  });
  afterAll(async () => {
    await server.close();
    await stripe.close();
  });

  async function createIntent(orderId: string, headers = buyer.headers) {
    return call<IntentJson>(server, 'POST', '/payments/create-intent', headers, { order_id: orderId });
  }

  function createsFor(orderId: string) {
    return stripe.received.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents' && r.form['metadata[kiln_order_id]'] === orderId);
  }

  describe('create-intent', () => {
    it("makes an intent for the order's total and answers its client secret", async () => {
      const orderId = await insertOrder(server, buyer.id, { totalMinor: 4990, currency: 'EUR' });
      const answer = await createIntent(orderId);
      expect(answer.status).toBe(201);
      const intentId = await intentIdOf(server, answer.body.payment_id);
      const intent = stripe.intents.get(intentId);
      expect(answer.body).toEqual({
        payment_id: expect.any(String),
        order_id: orderId,
        client_secret: intent?.client_secret,
        amount: '49.90',
        currency: 'EUR',
        status: 'requires_payment_method',
      });
      // Stripe was asked for the order's amount in minor units, its currency as Stripe writes it.
      const [sent] = createsFor(orderId);
      expect(sent?.form).toMatchObject({ amount: '4990', currency: 'eur', 'automatic_payment_methods[enabled]': 'true', 'metadata[kiln_user_id]': buyer.id });
      const order = await orderRow(server, orderId);
      expect(order.stripe_payment_intent_id).toBe(intentId);
      expect(order.status).toBe('pending');
    });

    it('takes a zero-decimal currency as Stripe does: 500 JPY is amount 500', async () => {
      const orderId = await insertOrder(server, buyer.id, { totalMinor: 500, currency: 'JPY' });
      const answer = await createIntent(orderId);
      expect(answer.status).toBe(201);
      expect(answer.body).toMatchObject({ amount: '500', currency: 'JPY' });
      expect(createsFor(orderId)[0]?.form).toMatchObject({ amount: '500', currency: 'jpy' });
    });

    it('refuses a body that names an amount (422): the amount is always the order\'s', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const answer = await call(server, 'POST', '/payments/create-intent', buyer.headers, { order_id: orderId, amount: '0.01' });
      expectProblem(answer, 422, 'validation_error');
      expect(createsFor(orderId)).toEqual([]);
      expect((await paymentRows(server)).filter((p) => p.order_id === orderId)).toEqual([]);
    });

    it('answers 422 naming the field for bodies without a good order_id, and 400 for one that is not JSON', async () => {
      const before = stripe.received.length;
      const missing = expectProblem(await call(server, 'POST', '/payments/create-intent', buyer.headers, {}), 422, 'validation_error');
      expect(missing.errors?.map((e) => e.field)).toEqual(['body.order_id']);
      const wrongType = expectProblem(await call(server, 'POST', '/payments/create-intent', buyer.headers, { order_id: 42 }), 422, 'validation_error');
      expect(wrongType.errors?.map((e) => e.field)).toEqual(['body.order_id']);
      expectProblem(await call(server, 'POST', '/payments/create-intent', buyer.headers, { order_id: '' }), 422, 'validation_error');
      expectProblem(await call(server, 'POST', '/payments/create-intent', buyer.headers, '{"order_id":'), 400, 'invalid_json');
      expect(stripe.received.length).toBe(before);
    });

    it("answers 404 for someone else's order, as for one that does not exist (admins included)", async () => {
      const orderId = await insertOrder(server, buyer.id);
      const theirs = expectProblem(await createIntent(orderId, stranger.headers), 404, 'order_not_found');
      const none = expectProblem(await createIntent('no-such-order', stranger.headers), 404, 'order_not_found');
      expect(theirs.detail).toBe(none.detail);
      expectProblem(await createIntent(orderId, server.admin), 404, 'order_not_found');
      expect(createsFor(orderId)).toEqual([]);
    });

    it('refuses an order that is not pending with 409 order_not_payable', async () => {
      for (const status of ['confirmed', 'shipped', 'delivered', 'cancelled']) {
        const orderId = await insertOrder(server, buyer.id, { status });
        const problem = expectProblem(await createIntent(orderId), 409, 'order_not_payable');
        expect(problem.detail).toContain(status);
        expect(createsFor(orderId)).toEqual([]);
      }
    });

    it('refuses an order cancelled while Stripe was making its intent (409), and cancels that intent at Stripe', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const hold = stripe.holdNextCreate();
      const paying = createIntent(orderId);
      await hold.arrived;
      const cancelled = await call(server, 'PUT', `/orders/${orderId}/status`, server.admin, { status: 'cancelled' });
      expect(cancelled.status).toBe(200);
      hold.release();

      const problem = expectProblem(await paying, 409, 'order_not_payable');
      expect(problem.detail).toContain('cancelled');
      // Nobody was handed a client secret, and the one intent made can no longer be paid.
      const made = [...stripe.intents.values()].filter((intent) => intent.metadata.kiln_order_id === orderId);
      expect(made.map((intent) => intent.status)).toEqual(['canceled']);
      expect((await paymentRows(server)).filter((p) => p.order_id === orderId)).toEqual([]);
      expect(await orderRow(server, orderId)).toMatchObject({ status: 'cancelled', stripe_payment_intent_id: null });
    });

    it('answers the live intent again (200) rather than making a second, and a new one once that is canceled', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const first = await createIntent(orderId);
      expect(first.status).toBe(201);
      const again = await createIntent(orderId);
      expect(again.status).toBe(200);
      expect(again.body).toEqual(first.body);
      expect(createsFor(orderId)).toHaveLength(1);

      stripe.cancel(await intentIdOf(server, first.body.payment_id));
      const next = await createIntent(orderId);
      expect(next.status).toBe(201);
      expect(next.body.payment_id).not.toBe(first.body.payment_id);
      expect(next.body.client_secret).not.toBe(first.body.client_secret);
      const rows = (await paymentRows(server)).filter((p) => p.order_id === orderId);
      expect(rows.map((p) => p.status).sort()).toEqual(['canceled', 'requires_payment_method']);
      // The order names its newest intent; the two creates used two idempotency keys.
      expect((await orderRow(server, orderId)).stripe_payment_intent_id).toBe(await intentIdOf(server, next.body.payment_id));
      const keys = createsFor(orderId).map((r) => r.idempotencyKey);
      expect(new Set(keys).size).toBe(2);
    });

    it('gives concurrent requests for one order the same intent and one payment', async () => {
      // Several orders, each asked for by several requests at once: enough that some read the
      // order while another request is recording its payment.
      const orderIds = await Promise.all(Array.from({ length: 5 }, () => insertOrder(server, buyer.id)));
      const answersByOrder = await Promise.all(orderIds.map((orderId) => Promise.all(Array.from({ length: 8 }, () => createIntent(orderId)))));
      const rows = await paymentRows(server);
      orderIds.forEach((orderId, i) => {
        const answers = answersByOrder[i] ?? [];
        expect(answers.map((a) => a.status).filter((s) => s === 201)).toHaveLength(1);
        expect(new Set(answers.map((a) => a.body.payment_id)).size).toBe(1);
        expect(rows.filter((p) => p.order_id === orderId)).toHaveLength(1);
        // Whatever reached Stripe carried one key, so Stripe made one intent.
        expect(new Set(createsFor(orderId).map((r) => r.idempotencyKey)).size).toBe(1);
        expect([...stripe.intents.values()].filter((intent) => intent.metadata.kiln_order_id === orderId)).toHaveLength(1);
      });
    });

    it.each([
      [200, {}],
      [200, { id: 'pi_1', object: 'payment_intent', status: 'requires_payment_method', amount: '12.00', currency: 'usd' }],
      [500, {}],
      [200, []],
    ])('answers 502 when Stripe answers %i %j, which is no PaymentIntent, and records nothing', async (status, body) => {
      const orderId = await insertOrder(server, buyer.id);
      stripe.answerNext.push({ status, body });
      expectProblem(await createIntent(orderId), 502, 'payment_provider_error');
      expect((await paymentRows(server)).filter((p) => p.order_id === orderId)).toEqual([]);
    });

    it.each([
      ['amount_too_small', 'Amount must be at least €0.50 eur'],
      ['amount_too_large', 'Amount must be no more than €999,999.99'],
    ])('answers 409 order_not_payable with Stripe\'s words when Stripe will not charge the total (%s), and records nothing', async (code, message) => {
      const orderId = await insertOrder(server, buyer.id);
      stripe.failNext.push({ status: 400, type: 'invalid_request_error', code, message });
      const problem = expectProblem(await createIntent(orderId), 409, 'order_not_payable');
      expect(problem.detail).toBe(`Stripe will not charge this order's total: ${message}.`);
      expect((await paymentRows(server)).filter((p) => p.order_id === orderId)).toEqual([]);
      expect((await orderRow(server, orderId)).status).toBe('pending');
    });

    it('answers 502 with Stripe\'s words, made a sentence, when Stripe refuses the request for another reason', async () => {
      const orderId = await insertOrder(server, buyer.id);
      stripe.failNext.push({ status: 400, type: 'invalid_request_error', code: 'parameter_unknown', message: 'Received unknown parameter: shipping' });
      const problem = expectProblem(await createIntent(orderId), 502, 'payment_provider_error');
      expect(problem.detail).toBe('Stripe refused the request: Received unknown parameter: shipping.');
      expect((await paymentRows(server)).filter((p) => p.order_id === orderId)).toEqual([]);
    });

    it('answers 502 when Stripe fails, and records nothing', async () => {
      const orderId = await insertOrder(server, buyer.id);
      stripe.failNext.push({ status: 500, type: 'api_error', message: 'An unknown error occurred' });
      const problem = expectProblem(await createIntent(orderId), 502, 'payment_provider_error');
      expect(problem.detail).toMatch(/try again later/);
      expect((await paymentRows(server)).filter((p) => p.order_id === orderId)).toEqual([]);
      expect((await orderRow(server, orderId)).stripe_payment_intent_id).toBeNull();
      // And the next try works.
      expect((await createIntent(orderId)).status).toBe(201);
    });
  });

  describe('GET /payments/{id}', () => {
    let payment: IntentJson;
    let orderId: string;
    beforeAll(async () => {
      orderId = await insertOrder(server, buyer.id, { totalMinor: 12345, currency: 'USD' });
      payment = (await createIntent(orderId)).body;
    });

    it('shows the buyer their payment, without its client secret', async () => {
      const answer = await call<PaymentJson>(server, 'GET', `/payments/${payment.payment_id}`, buyer.headers);
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual({
        payment_id: payment.payment_id,
        order_id: orderId,
        user_id: buyer.id,
        stripe_payment_intent_id: await intentIdOf(server, payment.payment_id),
        amount: '123.45',
        currency: 'USD',
        status: 'requires_payment_method',
        last_error: null,
        order_status: 'pending',
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        updated_at: expect.stringMatching(/Z$/),
      });
      expect(JSON.stringify(answer.body)).not.toContain('_secret_');
    });

    it('shows an admin any payment', async () => {
      const answer = await call<PaymentJson>(server, 'GET', `/payments/${payment.payment_id}`, server.admin);
      expect(answer.status).toBe(200);
      expect(answer.body.user_id).toBe(buyer.id);
    });

    it("answers 404 for someone else's payment, as for one that does not exist", async () => {
      const theirs = expectProblem(await call(server, 'GET', `/payments/${payment.payment_id}`, stranger.headers), 404, 'payment_not_found');
      const none = expectProblem(await call(server, 'GET', '/payments/nope', stranger.headers), 404, 'payment_not_found');
      expect(theirs.detail).toBe(none.detail);
    });

    it('asks for credentials', async () => {
      expectProblem(await call(server, 'GET', `/payments/${payment.payment_id}`), 401, 'unauthorized');
    });
  });

  describe('confirm', () => {
    async function confirm(paymentId: string, headers: Record<string, string> = buyer.headers) {
      return call<PaymentJson>(server, 'POST', '/payments/confirm', headers, { payment_id: paymentId });
    }

    function readsOf(intentId: string): number {
      return stripe.received.filter((r) => r.method === 'GET' && r.path === `/v1/payment_intents/${intentId}`).length;
    }

    it('re-reads the intent: not paid yet leaves the order pending; paid confirms it', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const { payment_id } = (await createIntent(orderId)).body;
      const intentId = await intentIdOf(server, payment_id);

      const early = await confirm(payment_id);
      expect(early.status).toBe(200);
      expect(early.body).toMatchObject({ status: 'requires_payment_method', order_status: 'pending' });
      expect((await orderRow(server, orderId)).status).toBe('pending');
      expect(readsOf(intentId)).toBe(1);

      stripe.succeed(intentId);
      const paid = await confirm(payment_id);
      expect(paid.status).toBe(200);
      expect(paid.body).toMatchObject({ status: 'succeeded', order_status: 'confirmed', last_error: null });
      expect(readsOf(intentId)).toBe(2);
      const order = await orderRow(server, orderId);
      expect(order.status).toBe('confirmed');

      // Once more: Stripe is asked again, and nothing changes.
      const again = await confirm(payment_id);
      expect(again.body).toEqual(paid.body);
      expect(await orderRow(server, orderId)).toEqual(order);
    });

    it("shows a declined attempt's reason, and the order stays pending", async () => {
      const orderId = await insertOrder(server, buyer.id);
      const { payment_id } = (await createIntent(orderId)).body;
      stripe.fail(await intentIdOf(server, payment_id), 'insufficient_funds', 'Your card has insufficient funds.');
      const answer = await confirm(payment_id);
      expect(answer.body).toMatchObject({
        status: 'requires_payment_method',
        last_error: { code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
        order_status: 'pending',
      });
    });

    it('answers 502 when Stripe reads the intent back as something else, and leaves the order pending', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const { payment_id } = (await createIntent(orderId)).body;
      stripe.answerNext.push({ status: 200, body: { object: 'payment_intent' } });
      expectProblem(await confirm(payment_id), 502, 'payment_provider_error');
      expect((await orderRow(server, orderId)).status).toBe('pending');
    });

    it('lets an admin confirm any payment', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const { payment_id } = (await createIntent(orderId)).body;
      stripe.succeed(await intentIdOf(server, payment_id));
      expect((await confirm(payment_id, server.admin)).body.order_status).toBe('confirmed');
    });

    it("answers 404 for someone else's payment without asking Stripe", async () => {
      const orderId = await insertOrder(server, buyer.id);
      const { payment_id } = (await createIntent(orderId)).body;
      const intentId = await intentIdOf(server, payment_id);
      stripe.succeed(intentId);
      expectProblem(await confirm(payment_id, stranger.headers), 404, 'payment_not_found');
      expect(readsOf(intentId)).toBe(0);
      expect((await orderRow(server, orderId)).status).toBe('pending');
    });

    it('leaves a cancelled order cancelled when its payment succeeds late (the payment shows succeeded)', async () => {
      const orderId = await insertOrder(server, buyer.id);
      const { payment_id } = (await createIntent(orderId)).body;
      await setOrderStatus(server, orderId, 'cancelled');
      stripe.succeed(await intentIdOf(server, payment_id));
      const answer = await confirm(payment_id);
      expect(answer.body).toMatchObject({ status: 'succeeded', order_status: 'cancelled' });
      expect((await orderRow(server, orderId)).status).toBe('cancelled');
    });

    it('does not confirm an order whose intent succeeded for another amount than the order\'s', async () => {
      const orderId = await insertOrder(server, buyer.id, { totalMinor: 4990 });
      const { payment_id } = (await createIntent(orderId)).body;
      const intent = stripe.succeed(await intentIdOf(server, payment_id));
      intent.amount = 100; // changed at Stripe with the secret key before it was paid
      const answer = await confirm(payment_id);
      expect(answer.body).toMatchObject({ status: 'succeeded', amount: '49.90', order_status: 'pending' });
      expect((await orderRow(server, orderId)).status).toBe('pending');
    });

    it('answers 422 for a bad body', async () => {
      expectProblem(await call(server, 'POST', '/payments/confirm', buyer.headers, {}), 422, 'validation_error');
      expectProblem(await call(server, 'POST', '/payments/confirm', buyer.headers, { payment_id: ['a'] }), 422, 'validation_error');
      expectProblem(await call(server, 'POST', '/payments/confirm', buyer.headers, { payment_id: 'a', status: 'succeeded' }), 422, 'validation_error');
    });
  });

  it('documents every payment route in /openapi.json', async () => {
    type Operation = {
      responses: Record<string, unknown>;
      parameters?: Array<{ in: string; name: string; required?: boolean }>;
      requestBody?: { content: Record<string, { schema: { required?: string[] } }> };
    };
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, Operation>> };
    expect(Object.keys(doc.paths['/payments/create-intent']?.post?.responses ?? {})).toEqual(expect.arrayContaining(['200', '201', '401', '404', '409', '422', '502', '503']));
    expect(Object.keys(doc.paths['/payments/confirm']?.post?.responses ?? {})).toEqual(expect.arrayContaining(['200', '404', '422', '503']));
    expect(Object.keys(doc.paths['/payments/{payment_id}']?.get?.responses ?? {})).toEqual(expect.arrayContaining(['200', '401', '404', '503']));
    const webhook = doc.paths['/payments/webhook']?.post;
    expect(Object.keys(webhook?.responses ?? {})).toEqual(expect.arrayContaining(['200', '400', '413', '503']));
    // What Stripe sends: the event as JSON, and its signature in a header. Fastify validates neither (the route checks the signature).
    expect(webhook?.requestBody?.content['application/json']?.schema.required).toEqual(['id', 'type', 'data']);
    expect(webhook?.parameters).toContainEqual(expect.objectContaining({ in: 'header', name: 'stripe-signature', required: false }));
  });
});

describe('payments with a key Stripe does not accept', () => {
  it('answer 503 saying to check STRIPE_KEY', async () => {
    const stripe = await startFakeStripe();
    const server = await startPayments(stripe, { STRIPE_KEY: 'sk_test_notTheFakesKey' });
    try {
      const user = await registerUser(server.url);
      const orderId = await insertOrder(server, user.id);
      const problem = expectProblem(await call(server, 'POST', '/payments/create-intent', user.headers, { order_id: orderId }), 503, 'payments_misconfigured');
      expect(problem.detail).toContain('STRIPE_KEY');
      expect(await paymentRows(server)).toEqual([]);
    } finally {
      await server.close();
      await stripe.close();
    }
  });
});

describe('payments through the outbound guard', () => {
  it('refuse a loopback STRIPE_API_BASE that FETCH_ALLOWED_HOSTS does not list: 502, nothing recorded, nothing sent, the refusal logged', async () => {
    const stripe = await startFakeStripe();
    const logDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-payments-log-'));
    // The fake Stripe listens on 127.0.0.1; without the allow-list the guard must not connect to it.
    const server = await startPayments(stripe, { FETCH_ALLOWED_HOSTS: '', LOG_FILE: path.join(logDir, 'kiln.log'), LOG_LEVEL: 'error' });
    let closed = false;
    try {
      expect(server.ctx.config.fetchAllowedHosts).toEqual([]);
      const user = await registerUser(server.url);
      const orderId = await insertOrder(server, user.id);
      const problem = expectProblem(await call(server, 'POST', '/payments/create-intent', user.headers, { order_id: orderId }), 502, 'payment_provider_error');
      expect(problem.detail).toMatch(/could not be reached/);
      expect(await paymentRows(server)).toEqual([]);
      expect((await orderRow(server, orderId)).stripe_payment_intent_id).toBeNull();
      expect(stripe.received).toEqual([]);
      // pino writes through a worker thread: only after close is every line on disk.
      await server.close();
      closed = true;
      const failed = readLogLines<{ msg: string; err?: { message?: string } }>(logDir).filter((l) => l.msg === 'request failed');
      expect(failed).toHaveLength(1);
      // The operator's log says why: the guard refused the address.
      expect(failed[0]?.err?.message).toContain('127.0.0.1 is not a public address');
    } finally {
      if (!closed) await server.close();
      await stripe.close();
      rmSync(logDir, { recursive: true, force: true });
    }
  });

  it("says why in the failure's cause: the guard's blocked_address, for create and retrieve alike", async () => {
    const stripe = await startFakeStripe();
    try {
      const gateway = createStripeGateway({ key: stripe.env.STRIPE_KEY, apiBase: stripe.baseUrl, webhookSecret: undefined }, []);
      const create = gateway?.createIntent({ amountMinor: 100, currency: 'EUR', orderId: 'o', userId: 'u' }, 'key-1');
      await expect(create).rejects.toBeInstanceOf(PaymentProviderFailed);
      await expect(create).rejects.toMatchObject({ status: 502, cause: { name: 'FetchError', code: 'blocked_address' } });
      await expect(gateway?.retrieveIntent('pi_x')).rejects.toMatchObject({ status: 502, cause: { code: 'blocked_address' } });
      expect(stripe.received).toEqual([]);
      // Listed, the same server is reached.
      const allowed = createStripeGateway({ key: stripe.env.STRIPE_KEY, apiBase: stripe.baseUrl, webhookSecret: undefined }, ['127.0.0.1']);
      const intent = await allowed?.createIntent({ amountMinor: 100, currency: 'EUR', orderId: 'o', userId: 'u' }, 'key-1');
      expect(intent).toMatchObject({ amountMinor: 100, currency: 'EUR', status: 'requires_payment_method' });
      expect(stripe.received).toHaveLength(1);
    } finally {
      await stripe.close();
    }
  });
});
