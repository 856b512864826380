/**
 * Prometheus metrics of custom orders (spec: upload statistics). Registered
 * once per Context on ctx.metrics.registry. Orders by status is read from
 * the database on each scrape with one GROUP BY, so every process reports
 * the same truth however many processes serve.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Context } from '../../context.js';
import { ORDER_STATUSES } from './lifecycle.js';
import { countByStatus } from './repo.js';

export interface OrderMetrics {
  filesAccepted: Counter;
  bytesAccepted: Counter;
  uploadsRejected: Counter<'reason'>;
  processingSeconds: Histogram;
}

const byContext = new WeakMap<Context, OrderMetrics>();

/** The metrics of this Context, created on first use (a registry refuses a name twice). */
export function orderMetrics(ctx: Context): OrderMetrics {
  const known = byContext.get(ctx);
  if (known) return known;
  const registers = [ctx.metrics.registry];
  const metrics: OrderMetrics = {
    filesAccepted: new Counter({ name: 'kiln_order_files_accepted_total', help: 'Photos stored by custom-order uploads.', registers }),
    bytesAccepted: new Counter({ name: 'kiln_order_bytes_accepted_total', help: 'Bytes of photos stored by custom-order uploads, as received.', registers }),
    uploadsRejected: new Counter({
      name: 'kiln_order_uploads_rejected_total',
      help: 'Custom-order uploads refused, by reason (the error code).',
      labelNames: ['reason'],
      registers,
    }),
    processingSeconds: new Histogram({
      name: 'kiln_order_image_processing_seconds',
      help: 'Time to render the variants and check the quality of one custom-order photo.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16],
      registers,
    }),
  };
  new Gauge({
    name: 'kiln_orders',
    help: 'Custom orders by status, counted in the database at scrape time.',
    labelNames: ['status'],
    registers,
    async collect() {
      const counts = new Map((await countByStatus(ctx.db.kysely)).map((r) => [r.status, r.count]));
      // Every status is reported, zero included, so a dashboard's series never vanish.
      for (const status of ORDER_STATUSES) this.set({ status }, counts.get(status) ?? 0);
    },
  });
  byContext.set(ctx, metrics);
  return metrics;
}
