/**
 * HTTP routes of payments (docs/payments.md). Parse, call the service, shape
 * the answer; the rules live in service.ts.
 *
 * Without STRIPE_KEY every route answers 503 naming it, checked before the
 * body is read (after the caller's credentials: a stranger learns only 401).
 */
import type { FastifyInstance, preParsingHookHandler } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Context } from '../../context.js';
import { requireUser } from '../../auth/guard.js';
import { authProblems, ProblemSchema, SIGNED_IN } from '../../platform/http/schemas.js';
import { PaymentService } from './service.js';
import { ConfirmBody, CreateIntentBody, IntentAnswer, PaymentAnswer, PaymentParams, StripeEventBody, WebhookAnswer, WebhookHeaders } from './schemas.js';

const TAGS = ['payments'];

/**
 * Stripe's events are a few kilobytes (a PaymentIntent and its envelope);
 * this leaves ample room and still bounds what an unsigned stranger can make
 * the server buffer and hash.
 */
export const WEBHOOK_BODY_LIMIT = 256 * 1024;

/** A route-level preParsing hook that runs `check` (a 503 when payments are off) before the body is read. */
function before(check: () => unknown): preParsingHookHandler {
  return (_request, _reply, payload, done) => {
    try {
      check();
    } catch (err) {
      done(err as Error);
      return;
    }
    done(null, payload);
  };
}

export async function paymentRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const payments = new PaymentService(ctx);
  const configured = before(() => payments.assertConfigured());

  app.post(
    '/payments/create-intent',
    {
      preParsing: configured,
      schema: {
        tags: TAGS,
        summary: "Start paying a pending order of yours: a Stripe PaymentIntent for the order's total (201), or the live one it already has (200)",
        security: SIGNED_IN,
        body: CreateIntentBody,
        response: { 200: IntentAnswer, 201: IntentAnswer, ...authProblems, 409: ProblemSchema, 502: ProblemSchema, 503: ProblemSchema },
      },
    },
    async (request, reply) => {
      const { view, created } = await payments.createIntent(requireUser(request), request.body.order_id);
      return reply.status(created ? 201 : 200).send(view);
    },
  );

  app.post(
    '/payments/confirm',
    {
      preParsing: configured,
      schema: {
        tags: TAGS,
        summary: 'Re-read the payment from Stripe; when it succeeded, its order becomes confirmed (the buyer or an admin)',
        security: SIGNED_IN,
        body: ConfirmBody,
        response: { 200: PaymentAnswer, ...authProblems, 502: ProblemSchema, 503: ProblemSchema },
      },
    },
    async (request) => payments.confirm(requireUser(request), request.body.payment_id),
  );

  app.get(
    '/payments/:payment_id',
    {
      preParsing: configured,
      schema: {
        tags: TAGS,
        summary: 'One payment as Kiln last heard of it (the buyer or an admin)',
        security: SIGNED_IN,
        params: PaymentParams,
        response: { 200: PaymentAnswer, ...authProblems, 503: ProblemSchema },
      },
    },
    async (request) => payments.get(requireUser(request), request.params.payment_id),
  );

  // The webhook needs the body's exact bytes (the signature is over them), so it gets a scope of its
  // own whose only parser keeps JSON as a Buffer; every other route keeps the app's JSON parser.
  await parent.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) => done(null, body));
    scope.withTypeProvider<TypeBoxTypeProvider>().post(
      '/payments/webhook',
      {
        preParsing: before(() => payments.assertWebhookConfigured()),
        config: { rawBody: StripeEventBody },
        // Rate limited like any route (per address, RATE_LIMIT_DEFAULT): Stripe delivers a 429'd event again later.
        schema: {
          tags: TAGS,
          summary: "Stripe's signed events (Stripe-Signature, STRIPE_WEBHOOK_SECRET): payment_intent.succeeded confirms the order; each event applies once",
          description:
            "The body is Stripe's event JSON, read as raw bytes (at most 256 KiB), signed in the `Stripe-Signature` header (`t=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">` under STRIPE_WEBHOOK_SECRET). A bad or missing signature is a 400 and changes nothing; event types Kiln does not follow are answered 200 and ignored.",
          consumes: ['application/json'],
          headers: WebhookHeaders,
          response: { 200: WebhookAnswer, 400: ProblemSchema, 413: ProblemSchema, 415: ProblemSchema, 503: ProblemSchema },
        },
      },
      async (request) => {
        // No body at all is not Stripe either: the signature check refuses it like any other.
        const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        // Node joins a repeated Stripe-Signature into one string; the type allows an array, which no signature is.
        const signature = request.headers['stripe-signature'];
        const { event, outcome } = await payments.handleWebhook(raw, typeof signature === 'string' ? signature : undefined);
        return { received: true as const, event_id: event.id, outcome };
      },
    );
  });
}
