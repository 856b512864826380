/**
 * Kiln's side of Stripe, through the official `stripe` client: make a
 * PaymentIntent, read one back, and verify a webhook delivery. Everything
 * leaves here in Kiln's terms (`Intent`, `StripeEvent`, DomainErrors), so
 * the service never sees the client's types or its errors.
 *
 * The client's requests go through Kiln's guarded fetch (`guardedWebFetch`),
 * like every other outbound request: Stripe's API is public, and a
 * STRIPE_API_BASE on a loopback or private address is reached only when its
 * host is in FETCH_ALLOWED_HOSTS.
 *
 * STRIPE_API_BASE points the client at another server (a test double): the
 * client takes protocol, host and port apart and adds `/v1/` itself.
 */
import type Stripe from 'stripe';
import type { StripeSettings } from '../../config.js';
import { BadRequest, Conflict, DomainError, ServiceUnavailable } from '../../errors.js';
import { findFetchError } from '../../platform/fetch/errors.js';
import { guardedWebFetch } from '../../platform/fetch/web.js';

/** A PaymentIntent as Kiln uses it. `currency` upper case, like an order's (Stripe writes it lower case). */
export interface Intent {
  id: string;
  status: string;
  amountMinor: number;
  currency: string;
  /** What the browser needs to pay (Stripe.js); Stripe gives it to secret-key reads only. */
  clientSecret: string | null;
  /** Why the last attempt failed (a declined card), or null. */
  lastError: { code: string; message: string | null } | null;
}

/** A verified webhook event; `intent` is its PaymentIntent for payment_intent.* events. */
export interface StripeEvent {
  id: string;
  type: string;
  intent: Intent | null;
}

export interface NewIntent {
  amountMinor: number;
  currency: string;
  orderId: string;
  userId: string;
}

export interface PaymentGateway {
  /** Same `idempotencyKey`, same intent: Stripe answers a repeated create with the first one's result. */
  createIntent(input: NewIntent, idempotencyKey: string): Promise<Intent>;
  retrieveIntent(intentId: string): Promise<Intent>;
  /** Cancels an intent that can still be paid; one Stripe will not cancel any more (it succeeded meanwhile) comes back as it is. */
  cancelIntent(intentId: string): Promise<Intent>;
  /** The event a delivery carries, once its Stripe-Signature matches `rawBody` under `secret`; else a 400. */
  verifyEvent(rawBody: Buffer, signature: string | undefined, secret: string, now: Date): Promise<StripeEvent>;
}

/** Stripe could not be reached, or failed: the request may be tried again later. */
export class PaymentProviderFailed extends DomainError {
  constructor(detail: string, code = 'payment_provider_error', cause?: unknown) {
    super(502, code, detail);
    // For the log of the failed request (the guard's refusal, say); the answer shows only `detail`.
    if (cause !== undefined) this.cause = cause;
  }
}

/** A payment call waits this long for Stripe (the buyer is waiting too). */
const TIMEOUT_MS = 20_000;

/** Stripe's answers are JSON objects of a few KiB; anything near this is not one. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

type StripeModule = typeof import('stripe');

// Loaded by the first payment, not at start: most Kiln processes never take one.
let loaded: Promise<StripeModule> | undefined;
const loadStripe = (): Promise<StripeModule> => (loaded ??= import('stripe'));

/**
 * The client's host options for STRIPE_API_BASE. An IPv6 literal keeps its
 * brackets: the fetch client writes `protocol://host` + path into a URL.
 */
function hostOptions(apiBase: string): Pick<Stripe.StripeConfig, 'protocol' | 'host' | 'port'> {
  const u = new URL(apiBase);
  const protocol = u.protocol === 'http:' ? 'http' : 'https';
  return { protocol, host: u.hostname, port: u.port || (protocol === 'http' ? 80 : 443) };
}

/**
 * A PaymentIntent as Kiln uses it, or null when `value` is not one: the
 * client types Stripe's answers but checks none of them, and an answer of
 * `{}` (a proxy's, a test double's) must not become a TypeError and a 500.
 */
function parseIntent(value: unknown): Intent | null {
  if (typeof value !== 'object' || value === null) return null;
  const pi = value as Partial<Record<keyof Stripe.PaymentIntent, unknown>>;
  const { id, status, amount, currency, client_secret: secret } = pi;
  if (typeof id !== 'string' || typeof status !== 'string' || !Number.isSafeInteger(amount) || typeof currency !== 'string') return null;
  if (secret !== null && secret !== undefined && typeof secret !== 'string') return null;
  const err = typeof pi.last_payment_error === 'object' && pi.last_payment_error !== null ? (pi.last_payment_error as Partial<Stripe.PaymentIntent.LastPaymentError>) : null;
  return {
    id,
    status,
    amountMinor: amount as number,
    currency: currency.toUpperCase(),
    clientSecret: secret ?? null,
    lastError: err ? { code: String(err.decline_code ?? err.code ?? err.type ?? 'unknown'), message: typeof err.message === 'string' ? err.message : null } : null,
  };
}

/** Stripe's answer to an intent call, which must be a PaymentIntent; anything else is Stripe failing (502). */
function intentOf(answer: unknown): Intent {
  const intent = parseIntent(answer);
  if (!intent) throw new PaymentProviderFailed('Stripe answered with something that is not a PaymentIntent; try again later.');
  return intent;
}

/** An object with a non-empty `id` and `type`: an event id names the delivery, and "" would be one id for any event. */
function isEventShaped(event: unknown): event is Stripe.Event {
  if (typeof event !== 'object' || event === null) return false;
  const { id, type } = event as { id?: unknown; type?: unknown };
  return typeof id === 'string' && id !== '' && typeof type === 'string' && type !== '';
}

/**
 * A payment_intent.* event's object, checked: the type names what data.object
 * is, but a signed body is still only JSON. Another type's event, or one about
 * another kind of object, is null (ignored); a payment_intent.* event whose
 * object is missing or not a whole PaymentIntent is no Stripe event (400).
 */
function eventIntent(event: Stripe.Event): Intent | null {
  if (!event.type.startsWith('payment_intent.')) return null;
  const data = (event as { data?: unknown }).data;
  const object = typeof data === 'object' && data !== null ? (data as { object?: unknown }).object : undefined;
  // About another kind of object (it says so in `object`): ignored. One that says nothing is no PaymentIntent: 400 below.
  const kind = typeof object === 'object' && object !== null ? (object as { object?: unknown }).object : undefined;
  if (typeof kind === 'string' && kind !== 'payment_intent') return null;
  const intent = parseIntent(object);
  if (!intent) throw new BadRequest(`The ${event.type} event carries no whole PaymentIntent.`, 'invalid_event');
  return intent;
}

/** Stripe's message as the end of a sentence of ours: it has a full stop, once ("Amount must be at least €0.50 eur" has none). */
function sentence(message: string): string {
  return /[.!?]$/.test(message) ? message : `${message}.`;
}

/** Stripe's error codes for an amount it will not charge in that currency (https://docs.stripe.com/error-codes). */
const AMOUNT_REFUSALS: ReadonlySet<string> = new Set(['amount_too_small', 'amount_too_large', 'invalid_charge_amount', 'invalid_charge_amount_no_decimal_compatible']);

/** The client's failure as Kiln answers it. Anything that is not the client's stays as it is (a 500). */
function providerFailure(err: unknown, sdk: StripeModule): unknown {
  const { errors } = sdk.default;
  if (err instanceof errors.StripeAuthenticationError || err instanceof errors.StripePermissionError) {
    return new ServiceUnavailable('Stripe did not accept STRIPE_KEY for this request: check the key (and its permissions) and restart.', 'payments_misconfigured');
  }
  // Stripe's minimum or maximum charge for the currency, or a step it does not charge in: asking again cannot help.
  if (err instanceof errors.StripeInvalidRequestError && AMOUNT_REFUSALS.has(err.code ?? '')) {
    return new Conflict(`Stripe will not charge this order's total: ${sentence(err.message)}`, 'order_not_payable');
  }
  if (err instanceof errors.StripeInvalidRequestError || err instanceof errors.StripeCardError) {
    return new PaymentProviderFailed(`Stripe refused the request: ${sentence(err.message)}`);
  }
  if (err instanceof errors.StripeError) {
    // A connection error carries what the fetch threw (the guard's refusal of a private STRIPE_API_BASE, say) as its detail.
    const cause = findFetchError((err as { detail?: unknown }).detail) ?? err;
    return new PaymentProviderFailed('Stripe could not be reached or failed to answer; try again later.', undefined, cause);
  }
  return err;
}

/**
 * The gateway of a deployment, or null when STRIPE_KEY is unset.
 * `allowedHosts` is FETCH_ALLOWED_HOSTS: the only private hosts the client may reach.
 */
export function createStripeGateway(settings: StripeSettings, allowedHosts: readonly string[]): PaymentGateway | null {
  const { key, apiBase } = settings;
  if (!key) return null;
  let client: Stripe | undefined;
  const connect = async (): Promise<{ sdk: StripeModule; client: Stripe }> => {
    const sdk = await loadStripe();
    client ??= new sdk.default(key, {
      // One retry (a dropped connection, or Stripe asking for it); a create carries its idempotency key, so a retry never makes a second intent.
      maxNetworkRetries: 1,
      // The whole request, body included (the fetch client's abort); the guard's own deadline only backs it up.
      timeout: TIMEOUT_MS,
      httpClient: sdk.default.createFetchHttpClient(guardedWebFetch({ allowedHosts, maxBytes: MAX_ANSWER_BYTES, connectTimeoutMs: 5_000, totalTimeoutMs: TIMEOUT_MS + 5_000 })),
      // A self-hosted service tells Stripe nothing beyond the requests themselves.
      telemetry: false,
      ...(apiBase ? hostOptions(apiBase) : {}),
    });
    return { sdk, client };
  };

  return {
    async createIntent(input, idempotencyKey) {
      const { sdk, client } = await connect();
      try {
        const pi = await client.paymentIntents.create(
          {
            amount: input.amountMinor,
            currency: input.currency.toLowerCase(),
            automatic_payment_methods: { enabled: true },
            // What a person reading Stripe's dashboard (or a webhook) needs to find the order.
            metadata: { kiln_order_id: input.orderId, kiln_user_id: input.userId },
          },
          { idempotencyKey },
        );
        return intentOf(pi);
      } catch (err) {
        throw providerFailure(err, sdk);
      }
    },

    async retrieveIntent(intentId) {
      const { sdk, client } = await connect();
      try {
        return intentOf(await client.paymentIntents.retrieve(intentId));
      } catch (err) {
        throw providerFailure(err, sdk);
      }
    },

    async cancelIntent(intentId) {
      const { sdk, client } = await connect();
      try {
        // 'abandoned': the shop cancelled the order, so nobody will pay this intent.
        return intentOf(await client.paymentIntents.cancel(intentId, { cancellation_reason: 'abandoned' }));
      } catch (err) {
        // Too late to cancel (it succeeded, or was canceled already): what it is now is the answer.
        if (err instanceof sdk.default.errors.StripeInvalidRequestError && err.code === 'payment_intent_unexpected_state') return this.retrieveIntent(intentId);
        throw providerFailure(err, sdk);
      }
    },

    async verifyEvent(rawBody, signature, secret, now) {
      const sdk = await loadStripe();
      let event: Stripe.Event;
      try {
        // The age check (Stripe's 5 minutes) uses Kiln's clock, like every other time here.
        event = sdk.default.webhooks.constructEvent(rawBody, signature ?? '', secret, undefined, undefined, now.getTime());
      } catch (err) {
        if (err instanceof sdk.default.errors.StripeSignatureVerificationError) {
          throw new BadRequest('The Stripe-Signature header is missing, too old, or does not match this body and STRIPE_WEBHOOK_SECRET.', 'invalid_signature');
        }
        // Signed, yet not JSON: nothing Stripe sends.
        throw new BadRequest('The webhook body is not a Stripe event.', 'invalid_event');
      }
      // Signed JSON that is no object (`null`, a number), or an event without an id or a type: nothing Stripe sends.
      if (!isEventShaped(event)) throw new BadRequest('The webhook body is not a Stripe event.', 'invalid_event');
      return { id: event.id, type: event.type, intent: eventIntent(event) };
    },
  };
}
