/**
 * Stripe's REST API on 127.0.0.1, as far as Kiln uses it, for
 * STRIPE_API_BASE:
 *
 * - `POST /v1/payment_intents` (form-encoded: amount, currency,
 *   automatic_payment_methods[enabled], metadata[…]) with Stripe's
 *   idempotency: the same Idempotency-Key and parameters answer the first
 *   result again, other parameters a 400 `idempotency_error`;
 * - `GET /v1/payment_intents/:id`, 404 `resource_missing` for an unknown id;
 * - `POST /v1/payment_intents/:id/cancel`, refused with
 *   `payment_intent_unexpected_state` once the intent succeeded or was
 *   canceled, or while it is processing;
 * - `Authorization: Bearer <key>` checked on each (401 otherwise);
 * - Stripe's object and error shapes (`{error: {type, code, message}}`).
 *
 * The test moves an intent on as a buyer's browser and Stripe would
 * (`succeed`, `fail`, `process`, `cancel`), and makes webhook deliveries signed as
 * Stripe signs them: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
 * "t.body">`, computed here rather than by the client library under test.
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const FAKE_STRIPE_KEY = 'sk_test_kilnFakeKey123';
export const WEBHOOK_SECRET = 'whsec_kilnTestSecret456';

/** A PaymentIntent as Stripe's API writes it (the fields Kiln or a reader of a test might look at). */
export interface FakeIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_capturable: number;
  amount_received: number;
  automatic_payment_methods: { enabled: boolean; allow_redirects: 'always' } | null;
  canceled_at: number | null;
  cancellation_reason: string | null;
  capture_method: 'automatic_async';
  client_secret: string;
  confirmation_method: 'automatic';
  created: number;
  currency: string;
  customer: null;
  description: null;
  last_payment_error: { type: string; code: string; decline_code?: string; message: string } | null;
  latest_charge: string | null;
  livemode: false;
  metadata: Record<string, string>;
  next_action: null;
  payment_method: string | null;
  payment_method_types: string[];
  status: string;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  form: Record<string, string>;
}

export interface FakeStripe {
  /** What STRIPE_API_BASE should be. */
  baseUrl: string;
  /**
   * The env that points a Kiln at this server. It lists 127.0.0.1 in
   * FETCH_ALLOWED_HOSTS: Kiln's calls to Stripe go through the outbound
   * guard, which refuses a loopback STRIPE_API_BASE that is not listed.
   */
  env: { STRIPE_KEY: string; STRIPE_API_BASE: string; STRIPE_WEBHOOK_SECRET: string; FETCH_ALLOWED_HOSTS: string };
  intents: Map<string, FakeIntent>;
  received: ReceivedRequest[];
  /** The next API requests answer this Stripe error instead (in order), with `Stripe-Should-Retry: false`. */
  failNext: Array<{ status: number; type: string; message: string; code?: string }>;
  /** The next API requests answer this JSON instead (in order), whatever it is: what a broken proxy or Stripe look-alike sends. */
  answerNext: Array<{ status: number; body: unknown }>;
  /**
   * Holds the next `POST /v1/payment_intents` before it is answered, as a
   * slow Stripe would: `arrived` resolves once it is in, and it is answered
   * once `release` is called.
   */
  holdNextCreate(): { arrived: Promise<void>; release: () => void };
  /** The buyer paid: succeeded, with a charge. */
  succeed(intentId: string): FakeIntent;
  /** A declined attempt: back to requires_payment_method, with the decline as last_payment_error. */
  fail(intentId: string, declineCode?: string, message?: string): FakeIntent;
  /** The buyer paid by a method that settles later (a SEPA debit): processing, which Stripe will not cancel. */
  process(intentId: string): FakeIntent;
  cancel(intentId: string): FakeIntent;
  /** A webhook event of `type` carrying the intent as it is now (a copy), as Stripe serialises it. */
  event(type: string, intentId: string, eventId?: string): { id: string; body: string };
  /** The Stripe-Signature header for `body`, at `timestamp` (unix seconds; default now). */
  sign(body: string, secret?: string, timestamp?: number): string;
  close(): Promise<void>;
}

function stripeId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': stripeId('req'), ...headers });
  res.end(JSON.stringify(body));
}

function stripeError(res: http.ServerResponse, status: number, type: string, message: string, extra: Record<string, string> = {}, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: { type, message, ...extra } }, headers);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function signPayload(body: string, secret: string, timestamp: number): string {
  const v1 = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${v1}`;
}

export async function startFakeStripe(apiKey = FAKE_STRIPE_KEY): Promise<FakeStripe> {
  const intents = new Map<string, FakeIntent>();
  const received: ReceivedRequest[] = [];
  const failNext: FakeStripe['failNext'] = [];
  const answerNext: FakeStripe['answerNext'] = [];
  /** Idempotency-Key -> the parameters it was first used with and the answer given. */
  const idempotent = new Map<string, { params: string; status: number; body: unknown }>();
  let createHold: { arrive: () => void; released: Promise<void> } | null = null;

  function createIntent(form: Record<string, string>): { status: number; body: unknown } {
    const amount = Number(form.amount);
    if (!Number.isInteger(amount) || amount < 1) return { status: 400, body: { error: { type: 'invalid_request_error', code: 'parameter_invalid_integer', param: 'amount', message: 'Invalid integer: amount' } } };
    const currency = form.currency ?? '';
    if (!/^[a-z]{3}$/.test(currency)) return { status: 400, body: { error: { type: 'invalid_request_error', code: 'parameter_invalid', param: 'currency', message: `Invalid currency: ${currency}` } } };
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(form)) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m?.[1]) metadata[m[1]] = v;
    }
    const id = stripeId('pi');
    const intent: FakeIntent = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      automatic_payment_methods: form['automatic_payment_methods[enabled]'] === 'true' ? { enabled: true, allow_redirects: 'always' } : null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic_async',
      client_secret: `${id}_secret_${randomBytes(12).toString('hex')}`,
      confirmation_method: 'automatic',
      created: Math.floor(Date.now() / 1000),
      currency,
      customer: null,
      description: null,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
      metadata,
      next_action: null,
      payment_method: null,
      payment_method_types: ['card'],
      status: 'requires_payment_method',
    };
    intents.set(id, intent);
    return { status: 200, body: intent };
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const text = await readBody(req);
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const form = Object.fromEntries(new URLSearchParams(text));
      const idempotencyKey = typeof req.headers['idempotency-key'] === 'string' ? req.headers['idempotency-key'] : undefined;
      received.push({ method: req.method ?? '', path, idempotencyKey, form });

      if (req.headers.authorization !== `Bearer ${apiKey}`) {
        stripeError(res, 401, 'invalid_request_error', 'Invalid API Key provided: sk_test_****');
        return;
      }
      const raw = answerNext.shift();
      if (raw) {
        sendJson(res, raw.status, raw.body, { 'stripe-should-retry': 'false' });
        return;
      }
      const scripted = failNext.shift();
      if (scripted) {
        stripeError(res, scripted.status, scripted.type, scripted.message, scripted.code ? { code: scripted.code } : {}, { 'stripe-should-retry': 'false' });
        return;
      }
      if (req.method === 'POST' && path === '/v1/payment_intents') {
        const hold = createHold;
        createHold = null;
        if (hold) {
          hold.arrive();
          await hold.released;
        }
        if (idempotencyKey !== undefined) {
          const earlier = idempotent.get(idempotencyKey);
          if (earlier && earlier.params !== text) {
            stripeError(res, 400, 'idempotency_error', `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`);
            return;
          }
          if (earlier) {
            sendJson(res, earlier.status, earlier.body, { 'idempotent-replayed': 'true' });
            return;
          }
        }
        const answer = createIntent(form);
        if (idempotencyKey !== undefined) idempotent.set(idempotencyKey, { params: text, ...answer });
        sendJson(res, answer.status, answer.body);
        return;
      }
      const cancel = /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(path);
      if (req.method === 'POST' && cancel?.[1]) {
        const intent = intents.get(decodeURIComponent(cancel[1]));
        if (!intent) {
          stripeError(res, 404, 'invalid_request_error', `No such payment_intent: '${cancel[1]}'`, { code: 'resource_missing', param: 'intent' });
          return;
        }
        // Stripe cancels a processing intent only "in rare cases" (some card flows); a debit on its way is refused, as here.
        if (intent.status === 'succeeded' || intent.status === 'canceled' || intent.status === 'processing') {
          stripeError(res, 400, 'invalid_request_error', `You cannot cancel this PaymentIntent because it has a status of ${intent.status}. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.`, { code: 'payment_intent_unexpected_state' });
          return;
        }
        Object.assign(intent, { status: 'canceled', canceled_at: Math.floor(Date.now() / 1000), cancellation_reason: form.cancellation_reason ?? null });
        sendJson(res, 200, intent);
        return;
      }
      const one = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
      if (req.method === 'GET' && one?.[1]) {
        const intent = intents.get(decodeURIComponent(one[1]));
        if (!intent) {
          stripeError(res, 404, 'invalid_request_error', `No such payment_intent: '${one[1]}'`, { code: 'resource_missing', param: 'intent' });
          return;
        }
        sendJson(res, 200, intent);
        return;
      }
      stripeError(res, 404, 'invalid_request_error', `Unrecognized request URL (${req.method} ${path}).`);
    })().catch((err: unknown) => {
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;

  function intentOf(id: string): FakeIntent {
    const intent = intents.get(id);
    if (!intent) throw new Error(`the fake Stripe has no intent ${id}`);
    return intent;
  }

  return {
    baseUrl,
    env: { STRIPE_KEY: apiKey, STRIPE_API_BASE: baseUrl, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, FETCH_ALLOWED_HOSTS: '127.0.0.1' },
    intents,
    received,
    failNext,
    answerNext,
    holdNextCreate() {
      let arrive = (): void => {};
      let release = (): void => {};
      const arrived = new Promise<void>((resolve) => (arrive = resolve));
      createHold = { arrive, released: new Promise<void>((resolve) => (release = resolve)) };
      return { arrived, release };
    },
    succeed(id) {
      const intent = intentOf(id);
      Object.assign(intent, { status: 'succeeded', amount_received: intent.amount, latest_charge: stripeId('ch'), payment_method: stripeId('pm'), last_payment_error: null });
      return intent;
    },
    fail(id, declineCode = 'insufficient_funds', message = 'Your card has insufficient funds.') {
      const intent = intentOf(id);
      intent.status = 'requires_payment_method';
      intent.last_payment_error = { type: 'card_error', code: 'card_declined', decline_code: declineCode, message };
      return intent;
    },
    process(id) {
      const intent = intentOf(id);
      Object.assign(intent, { status: 'processing', payment_method: stripeId('pm'), last_payment_error: null });
      return intent;
    },
    cancel(id) {
      const intent = intentOf(id);
      Object.assign(intent, { status: 'canceled', canceled_at: Math.floor(Date.now() / 1000), cancellation_reason: 'requested_by_customer' });
      return intent;
    },
    event(type, intentId, eventId = stripeId('evt')) {
      const body = JSON.stringify(
        {
          id: eventId,
          object: 'event',
          api_version: '2025-10-29.clover',
          created: Math.floor(Date.now() / 1000),
          data: { object: structuredClone(intentOf(intentId)) },
          livemode: false,
          pending_webhooks: 1,
          request: { id: null, idempotency_key: null },
          type,
        },
        null,
        2,
      );
      return { id: eventId, body };
    },
    sign(body, secret = WEBHOOK_SECRET, timestamp = Math.floor(Date.now() / 1000)) {
      return signPayload(body, secret, timestamp);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
