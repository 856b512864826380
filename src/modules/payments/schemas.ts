/** Request and answer shapes of the payment routes (docs/payments.md); they feed validation and /openapi.json alike. */
import { Type } from '@sinclair/typebox';

const Id = Type.String({ minLength: 1, maxLength: 64 });
const Money = Type.String({ description: 'A decimal amount in the currency, exact: "49.90"', examples: ['49.90'] });
const IntentStatus = Type.String({
  description: "The PaymentIntent's status as Stripe last reported it: requires_payment_method, requires_confirmation, requires_action, processing, requires_capture, canceled or succeeded",
});

/** No `amount` here: a payment is for the order's total, and a body naming anything else is a 422. */
export const CreateIntentBody = Type.Object({ order_id: Id }, { additionalProperties: false });
export const ConfirmBody = Type.Object({ payment_id: Id }, { additionalProperties: false });
export const PaymentParams = Type.Object({ payment_id: Type.String({ maxLength: 64 }) });

export const IntentAnswer = Type.Object({
  payment_id: Type.String(),
  order_id: Type.String(),
  client_secret: Type.String({ description: "For Stripe.js (stripe.confirmPayment) in the buyer's browser; keep it out of logs and URLs" }),
  amount: Money,
  currency: Type.String({ description: 'ISO 4217 code, upper case' }),
  status: IntentStatus,
});

export const PaymentAnswer = Type.Object({
  payment_id: Type.String(),
  order_id: Type.String(),
  user_id: Type.String(),
  stripe_payment_intent_id: Type.String(),
  amount: Money,
  currency: Type.String(),
  status: IntentStatus,
  last_error: Type.Union([Type.Object({ code: Type.String(), message: Type.Union([Type.String(), Type.Null()]) }), Type.Null()], {
    description: "Why the last attempt failed (Stripe's decline or error code and its message), or null",
  }),
  order_status: Type.String({ description: "The order's status now: confirmed once the payment succeeded" }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const WebhookAnswer = Type.Object({
  received: Type.Literal(true),
  event_id: Type.String(),
  outcome: Type.Union([Type.Literal('applied'), Type.Literal('unchanged'), Type.Literal('duplicate'), Type.Literal('ignored')], {
    description:
      'applied: the payment (and order) were updated; unchanged: a new event that said nothing new, or would have moved a final payment back (a failure after a success); duplicate: this event was delivered before; ignored: a type or an intent Kiln does not follow',
  }),
});

/** A Stripe event as the document shows it: Kiln reads the raw bytes (the signature is over them) and checks only what it uses. */
export const StripeEventBody = Type.Object(
  {
    id: Type.String({ description: 'evt_…' }),
    type: Type.String({ description: 'payment_intent.succeeded, payment_intent.payment_failed, …' }),
    data: Type.Object({ object: Type.Object({}, { additionalProperties: true, description: 'the PaymentIntent' }) }),
  },
  { additionalProperties: true },
);

export const WebhookHeaders = Type.Object({
  'stripe-signature': Type.Optional(Type.String({ description: 't=<unix time>,v1=<hex HMAC-SHA256 of "t.body"> under STRIPE_WEBHOOK_SECRET' })),
});
