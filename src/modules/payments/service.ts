/**
 * Payments of shop orders through Stripe (docs/payments.md). The rules:
 *
 * - The amount is the order's total, read from the order row: a client never names it.
 * - Only a pending order can be paid, and only by its buyer; someone else's
 *   order or payment is a 404, as if it did not exist (admins may read any payment).
 * - One order, one live intent: asking again returns the intent it has
 *   (re-read from Stripe) until that one is canceled. Concurrent asks send
 *   Stripe the same idempotency key, so they get the same intent too.
 * - An order is confirmed when Stripe says its intent succeeded, for the
 *   order's amount and currency; by whichever sees it first, `confirm` or the
 *   webhook (the shop's conditional `confirmPaidOrder`).
 * - A cancelled order stays cancelled: a payment that succeeds after the
 *   cancel is recorded as succeeded, logged for a refund, and confirms nothing.
 * - A webhook event is applied once: its id is recorded in the transaction
 *   that applies it.
 *
 * No transaction is held over a call to Stripe.
 */
import type { Kysely, Transaction } from 'kysely';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Conflict, NotFound, ServiceUnavailable } from '../../errors.js';
import { newId } from '../../ids.js';
import type { Principal } from '../../auth/principal.js';
import type { Database } from '../../platform/db/schema.js';
import { formatMoney } from '../shop/money.js';
import { confirmPaidOrder } from '../shop/order-status.js';
import { findOrderOfBuyer, orderStatusOf, recordPaymentIntent } from '../shop/orders.js';
import * as repo from './repo.js';
import { createStripeGateway, type Intent, type PaymentGateway, type StripeEvent } from './stripe.js';

type Q = Transaction<Database> | Kysely<Database>;

/** A payment with its order's status now. */
type PaymentWithOrder = repo.PaymentRow & { order_status: string };

export const NOT_CONFIGURED = 'Payments are not configured on this server: set STRIPE_KEY (a Stripe secret key, sk_…) and restart.';
export const WEBHOOK_NOT_CONFIGURED = "Stripe webhooks are not configured on this server: set STRIPE_WEBHOOK_SECRET (the endpoint's signing secret, whsec_…) and restart.";

/** The payment_intent.* events whose intent is written down; any other event is answered and ignored. */
export const HANDLED_EVENTS: ReadonlySet<string> = new Set([
  'payment_intent.succeeded',
  'payment_intent.payment_failed',
  'payment_intent.canceled',
  'payment_intent.processing',
  'payment_intent.requires_action',
]);

/** What POST /payments/create-intent answers. */
export interface IntentView {
  payment_id: string;
  order_id: string;
  client_secret: string;
  amount: string;
  currency: string;
  status: string;
}

/** Intent statuses of money on its way or received: an order with such a payment never expires unpaid. */
const PAYING: ReadonlySet<string> = new Set(['processing', 'requires_capture', 'succeeded']);

/** A payment as GET /payments/{id} and POST /payments/confirm show it. */
export interface PaymentView {
  payment_id: string;
  order_id: string;
  user_id: string;
  stripe_payment_intent_id: string;
  amount: string;
  currency: string;
  status: string;
  last_error: { code: string; message: string | null } | null;
  /** The order's status now: `confirmed` once this payment succeeded (unless it had been cancelled). */
  order_status: string;
  created_at: string;
  updated_at: string;
}

export type WebhookOutcome = 'applied' | 'unchanged' | 'duplicate' | 'ignored';

const paymentNotFound = (): NotFound => new NotFound('No such payment.', 'payment_not_found');
const orderNotFound = (): NotFound => new NotFound('No such order.', 'order_not_found');

function paymentView(row: PaymentWithOrder): PaymentView {
  return {
    payment_id: row.payment_id,
    order_id: row.order_id,
    user_id: row.user_id,
    stripe_payment_intent_id: row.intent_id,
    amount: formatMoney(row.amount_minor, row.currency),
    currency: row.currency,
    status: row.status,
    last_error: row.last_error_code === null ? null : { code: row.last_error_code, message: row.last_error_message },
    order_status: row.order_status,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** The payment with its order's status, asked of the shop. */
async function findPaymentWithOrder(q: Q, paymentId: string): Promise<PaymentWithOrder | undefined> {
  const payment = await repo.findPayment(q, paymentId);
  const orderStatus = payment && (await orderStatusOf(q, payment.order_id));
  // The foreign key takes a payment with its order: an order gone meanwhile means its payment is gone too.
  return payment && orderStatus !== undefined ? { ...payment, order_status: orderStatus } : undefined;
}

/**
 * The idempotency key of an order's n-th intent, n being one more than its
 * canceled intents. Two requests racing to pay the same order both count n
 * and so get one intent from Stripe; once that intent is canceled, the next
 * request counts n + 1 and gets a new intent.
 */
function intentKey(orderId: string, attempt: number): string {
  return `kiln-order-${orderId}-${attempt}`;
}

export class PaymentService {
  /** null without STRIPE_KEY. */
  private readonly gateway: PaymentGateway | null;

  constructor(private readonly ctx: Context) {
    this.gateway = createStripeGateway(ctx.config.stripe, ctx.config.fetchAllowedHosts);
  }

  /** The gateway, or the 503 that says what to set. Routes call it before reading a body. */
  assertConfigured(): PaymentGateway {
    if (!this.gateway) throw new ServiceUnavailable(NOT_CONFIGURED, 'payments_not_configured');
    return this.gateway;
  }

  assertWebhookConfigured(): { gateway: PaymentGateway; secret: string } {
    const gateway = this.assertConfigured();
    const secret = this.ctx.config.stripe.webhookSecret;
    if (!secret) throw new ServiceUnavailable(WEBHOOK_NOT_CONFIGURED, 'webhooks_not_configured');
    return { gateway, secret };
  }

  /** 201 with a new intent (`created`), or 200 with the order's live one. */
  async createIntent(principal: Principal, orderId: string): Promise<{ view: IntentView; created: boolean }> {
    const gateway = this.assertConfigured();
    const { ctx } = this;
    // A payment is the buyer's own act: anyone else, admins included, finds no such order.
    const order = await findOrderOfBuyer(ctx.db.kysely, principal.userId, orderId);
    if (!order) throw orderNotFound();
    if (order.status !== 'pending') throw new Conflict(`Only a pending order can be paid; this one is ${order.status}.`, 'order_not_payable');
    const amountMinor = Number(order.total_minor);
    if (amountMinor <= 0) throw new Conflict('This order has nothing to pay.', 'order_not_payable');

    const live = await repo.livePaymentOf(ctx.db.kysely, orderId);
    if (live) {
      // Re-read: the buyer needs its client secret, and Stripe may have moved it on meanwhile (canceled it, say).
      const intent = await gateway.retrieveIntent(live.intent_id);
      const row = await this.applyIntent(live, intent);
      if (row.status !== 'canceled') return { view: this.intentView(row, intent), created: false };
    }

    // Every earlier intent of the order is canceled here, so this counts the attempts so far.
    const attempt = (await repo.countCanceledPayments(ctx.db.kysely, orderId)) + 1;
    const intent = await gateway.createIntent({ amountMinor, currency: order.currency, orderId, userId: order.user_id }, intentKey(orderId, attempt));
    const now = isoNow(ctx.clock);
    const row: repo.PaymentRow = {
      payment_id: newId(),
      order_id: orderId,
      user_id: order.user_id,
      intent_id: intent.id,
      // What Kiln asked for, which is what Stripe made (applyIntent checks it again before confirming).
      amount_minor: amountMinor,
      currency: order.currency,
      status: intent.status,
      last_error_code: intent.lastError?.code ?? null,
      last_error_message: intent.lastError?.message ?? null,
      created_at: now,
      updated_at: now,
    };
    const outcome = await ctx.db.kysely.transaction().execute(async (tx) => {
      // The order first: an admin may have cancelled it while Stripe was making the intent.
      if (!(await recordPaymentIntent(tx, orderId, intent.id, now))) return 'not_payable' as const;
      // In the same transaction: the order never names an intent without its payment row, nor the reverse.
      return (await repo.insertPayment(tx, row)) ? ('inserted' as const) : ('lost' as const);
    });
    if (outcome === 'not_payable') {
      // The cancel found no payment to cancel at Stripe, so this one cancels the intent it has just made.
      await this.cancelUnrecorded(orderId, intent.id);
      const status = (await orderStatusOf(ctx.db.kysely, orderId)) ?? 'gone';
      throw new Conflict(`Only a pending order can be paid; this one is ${status}.`, 'order_not_payable');
    }
    const inserted = outcome === 'inserted';
    // Lost the race to a concurrent request with the same key: answer with the row it made.
    const stored = inserted ? row : await repo.findPaymentByIntent(ctx.db.kysely, intent.id);
    if (!stored) throw new Error(`payment of intent ${intent.id} is neither inserted nor found`);
    return { view: this.intentView(stored, intent), created: inserted };
  }

  /** Re-reads the payment's intent from Stripe and applies it: the order is confirmed when it succeeded. */
  async confirm(principal: Principal, paymentId: string): Promise<PaymentView> {
    const gateway = this.assertConfigured();
    const payment = await this.visiblePayment(principal, paymentId);
    const intent = await gateway.retrieveIntent(payment.intent_id);
    return paymentView(await this.applyIntent(payment, intent));
  }

  async get(principal: Principal, paymentId: string): Promise<PaymentView> {
    this.assertConfigured();
    return paymentView(await this.visiblePayment(principal, paymentId));
  }

  /**
   * A webhook delivery: verified, then applied at most once. Events of other
   * types, and intents Kiln did not make, are acknowledged and ignored
   * (Stripe would otherwise retry them for days).
   */
  async handleWebhook(rawBody: Buffer, signature: string | undefined): Promise<{ event: StripeEvent; outcome: WebhookOutcome }> {
    const { gateway, secret } = this.assertWebhookConfigured();
    const { ctx } = this;
    const event = await gateway.verifyEvent(rawBody, signature, secret, ctx.clock.now());
    const intent = event.intent;
    if (!HANDLED_EVENTS.has(event.type) || !intent) return { event, outcome: 'ignored' };
    const outcome = await ctx.db.kysely.transaction().execute(async (tx): Promise<WebhookOutcome> => {
      if (!(await repo.recordEvent(tx, event.id, event.type, isoNow(ctx.clock)))) return 'duplicate';
      const payment = await repo.findPaymentByIntent(tx, intent.id);
      if (!payment) return 'ignored';
      return (await this.writeIntent(tx, payment, intent)) ? 'applied' : 'unchanged';
    });
    if (outcome === 'ignored') ctx.log.info({ eventId: event.id, intentId: intent.id }, 'stripe event for an intent Kiln did not make: ignored');
    return { event, outcome };
  }

  /**
   * The order was cancelled: its intent that can still be paid is canceled at
   * Stripe, so the buyer cannot pay for what will not be sent. Best effort
   * and never throws: the order is cancelled already, and a payment that
   * slips through is recorded and logged for a refund (confirmOrder). Without
   * STRIPE_KEY there is nothing to cancel.
   */
  async releaseCancelledOrder(orderId: string): Promise<void> {
    if (!this.gateway) return;
    const live = await repo.livePaymentOf(this.ctx.db.kysely, orderId);
    if (!live || live.status === 'succeeded') return;
    try {
      const recorded = await this.applyIntent(live, await this.gateway.cancelIntent(live.intent_id));
      // Money already on its way (a debit processing) arrives all the same; its success is logged for a refund then too.
      if (recorded.status === 'processing') {
        this.ctx.log.warn({ orderId, paymentId: live.payment_id, intentId: live.intent_id }, 'cancelled an order whose payment is processing: Stripe will not cancel it, so refund it in Stripe if it succeeds');
      }
    } catch (err) {
      this.ctx.log.warn({ err, orderId, intentId: live.intent_id }, 'could not cancel the payment intent of a cancelled order: cancel it in Stripe');
    }
  }

  /**
   * Before an unpaid order expires (shop/expiry.ts): true when nobody can pay
   * it any more, so cancelling it loses no payment. Its open intent is
   * canceled at Stripe first; false, and the order left pending for the next
   * sweep, when there was payment activity at or after `before`, when the
   * money is on its way or paid (`processing`, `requires_capture`,
   * `succeeded`, whether Kiln knew or Stripe's answer to the cancel says so),
   * when Stripe cannot be reached, or when STRIPE_KEY is unset but the order
   * has an intent Kiln cannot ask about.
   */
  async releaseUnpaidOrder(orderId: string, before: string): Promise<boolean> {
    const live = await repo.livePaymentOf(this.ctx.db.kysely, orderId);
    if (!live) return true;
    if (live.updated_at >= before || PAYING.has(live.status) || !this.gateway) return false;
    try {
      const recorded = await this.applyIntent(live, await this.gateway.cancelIntent(live.intent_id));
      return recorded.status === 'canceled';
    } catch (err) {
      this.ctx.log.warn({ err, orderId, intentId: live.intent_id }, 'could not cancel the payment intent of an unpaid order: it stays pending until Stripe answers');
      return false;
    }
  }

  /** Cancels an intent no payment row names (its order stopped being payable meanwhile). Best effort, like releaseCancelledOrder. */
  private async cancelUnrecorded(orderId: string, intentId: string): Promise<void> {
    try {
      await this.assertConfigured().cancelIntent(intentId);
    } catch (err) {
      this.ctx.log.warn({ err, orderId, intentId }, 'could not cancel the payment intent of an order cancelled meanwhile: cancel it in Stripe');
    }
  }

  /** The payment when the caller is its buyer or an admin; a 404 for anyone else. */
  private async visiblePayment(principal: Principal, paymentId: string): Promise<PaymentWithOrder> {
    const payment = await findPaymentWithOrder(this.ctx.db.kysely, paymentId);
    if (!payment || (payment.user_id !== principal.userId && !principal.isAdmin)) throw paymentNotFound();
    return payment;
  }

  private intentView(row: repo.PaymentRow, intent: Intent): IntentView {
    // Stripe hands every secret-key read of an intent its client secret; without one the buyer could not pay.
    if (!intent.clientSecret) throw new Error(`Stripe sent intent ${intent.id} without its client secret`);
    return {
      payment_id: row.payment_id,
      order_id: row.order_id,
      client_secret: intent.clientSecret,
      amount: formatMoney(row.amount_minor, row.currency),
      currency: row.currency,
      status: row.status,
    };
  }

  private applyIntent(payment: repo.PaymentRow, intent: Intent): Promise<PaymentWithOrder> {
    return this.ctx.db.kysely.transaction().execute((tx) => this.applyIntentIn(tx, payment, intent));
  }

  /**
   * Writes what Stripe says of the intent onto the payment, then confirms
   * the order when the intent succeeded for the amount that was asked. A
   * final payment (succeeded, canceled) is never rewritten: an older event
   * that arrives late cannot undo it. Returns the row as it now is.
   */
  private async applyIntentIn(tx: Q, payment: repo.PaymentRow, intent: Intent): Promise<PaymentWithOrder> {
    await this.writeIntent(tx, payment, intent);
    const row = await findPaymentWithOrder(tx, payment.payment_id);
    if (!row) throw new Error(`payment ${payment.payment_id} vanished while it was updated`);
    return row;
  }

  /** What applyIntentIn writes; true when the payment or its order changed. */
  private async writeIntent(tx: Q, payment: repo.PaymentRow, intent: Intent): Promise<boolean> {
    const now = isoNow(this.ctx.clock);
    const changes: repo.PaymentChanges = {
      status: intent.status,
      last_error_code: intent.lastError?.code ?? null,
      last_error_message: intent.lastError?.message ?? null,
      updated_at: now,
    };
    // Nothing new (a second confirm, say): the row, and its updated_at, stay as they are.
    const differs = changes.status !== payment.status || changes.last_error_code !== payment.last_error_code || changes.last_error_message !== payment.last_error_message;
    const changed = differs && (await repo.updatePayment(tx, payment.payment_id, changes));
    const confirmed = intent.status === 'succeeded' && (await this.confirmOrder(tx, payment, intent, now, changed));
    return changed || confirmed;
  }

  /**
   * The order of a succeeded intent becomes confirmed, if it is still pending
   * and was paid as priced; true when it did. Logs what needs a person.
   */
  private async confirmOrder(tx: Q, payment: repo.PaymentRow, intent: Intent, now: string, justSucceeded: boolean): Promise<boolean> {
    const { log } = this.ctx;
    const facts = { paymentId: payment.payment_id, orderId: payment.order_id, intentId: intent.id };
    if (intent.amountMinor !== Number(payment.amount_minor) || intent.currency !== payment.currency) {
      // Someone with the secret key changed the intent's amount: the order was not paid as priced.
      if (justSucceeded) log.error({ ...facts, paid: `${intent.amountMinor} ${intent.currency}`, asked: `${Number(payment.amount_minor)} ${payment.currency}` }, 'a payment succeeded for another amount than its order: the order is not confirmed');
      return false;
    }
    if (await confirmPaidOrder(tx, payment.order_id, now)) return true;
    // Paid after the order was cancelled: the order stays cancelled, the money is the buyer's, and Kiln does not refund by itself.
    if (justSucceeded && (await orderStatusOf(tx, payment.order_id)) === 'cancelled') log.warn(facts, 'payment succeeded for a cancelled order: refund it in Stripe');
    return false;
  }
}
