/**
 * Prometheus metrics, one registry per Context (so several apps in one test
 * process never collide). Modules add their own counters through `registry`.
 */
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import { HttpMetrics } from './http.js';

export interface Metrics {
  registry: Registry;
  /** kiln_http_requests_total and kiln_http_request_duration_seconds (http.ts). */
  http: HttpMetrics;
  httpErrors: Counter<'route' | 'code'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kiln_' });
  return {
    registry,
    http: new HttpMetrics(registry),
    httpErrors: new Counter({
      name: 'kiln_http_errors_total',
      help: 'Error answers (4xx and 5xx), by route pattern and error code.',
      labelNames: ['route', 'code'],
      registers: [registry],
    }),
  };
}
