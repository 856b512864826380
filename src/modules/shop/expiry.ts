/**
 * Unpaid orders give their stock back (docs/shop.md). An order reserves its
 * stock when it is placed; one that nobody pays would hold it for ever. Once
 * a pending order with something to pay has not changed for
 * ORDER_HOLD_MINUTES, a sweep cancels it as an admin would: its open intent
 * is canceled at Stripe first (so no payment can arrive for an order that is
 * gone), then the order is cancelled and its stock returned.
 *
 * Every process that serves or runs jobs sweeps once a minute. Two processes
 * sweeping the same order is harmless: the cancel is decided under the order
 * row's lock, so one of them makes it and the other finds it cancelled.
 */
import { isoAgo } from '../../clock.js';
import type { Context } from '../../context.js';
import { PeriodicSweep } from '../../platform/sweep.js';
import type { OrderService } from './orders.js';
import type { StaleOrder } from './repo.js';

/** How often a process looks for orders whose hold ran out. */
export const SWEEP_INTERVAL_MS = 60_000;
/** Orders read from the database at a time. */
const PAGE = 100;

/** What the sweep needs of payments (modules/payments): whether an order can be let go. */
export interface PaymentRelease {
  releaseUnpaidOrder(orderId: string, before: string): Promise<boolean>;
}

export class UnpaidOrderExpiry {
  private readonly periodic: PeriodicSweep;

  constructor(
    private readonly ctx: Context,
    private readonly orders: OrderService,
    private readonly payments: PaymentRelease,
  ) {
    this.periodic = new PeriodicSweep(ctx.log, 'sweeping unpaid orders', SWEEP_INTERVAL_MS, () => this.sweepOnce());
  }

  /** Cancels the pending orders whose hold ran out; resolves with how many (one sweep at a time, platform/sweep.ts). */
  sweep(): Promise<number> {
    return this.periodic.run();
  }

  /** Sweeps every SWEEP_INTERVAL_MS until `stop`. */
  start(): void {
    this.periodic.start();
  }

  /** Stops the timer and waits for a sweep under way. */
  stop(): Promise<void> {
    return this.periodic.stop();
  }

  private async sweepOnce(): Promise<number> {
    const { ctx } = this;
    const before = isoAgo(ctx.clock, ctx.config.orderHoldMinutes * 60_000);
    let expired = 0;
    // Page by page to the end: orders that must wait (a payment under way) do not hide the ones behind them.
    let after: StaleOrder | undefined;
    for (;;) {
      const page = await this.orders.stalePending(before, PAGE, after);
      for (const { order_id: orderId } of page) {
        if (!(await this.payments.releaseUnpaidOrder(orderId, before))) continue;
        if (await this.orders.expire(orderId, before)) {
          expired += 1;
          ctx.log.info({ orderId, holdMinutes: ctx.config.orderHoldMinutes }, 'unpaid order expired: cancelled, its stock returned');
        }
      }
      if (page.length < PAGE) return expired;
      after = page.at(-1);
    }
  }
}
