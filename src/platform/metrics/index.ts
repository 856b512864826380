/**
 * Prometheus metrics, one registry per Context (so several apps in one test
 * process never collide). Modules add their own counters through `registry`.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  httpErrors: Counter<'route' | 'code'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kiln_' });
  return {
    registry,
    httpRequests: new Counter({
      name: 'kiln_http_requests_total',
      help: 'HTTP requests answered, by route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'kiln_http_request_duration_seconds',
      help: 'Time from request to the end of the answer, by route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    httpErrors: new Counter({
      name: 'kiln_http_errors_total',
      help: 'Error answers (4xx and 5xx), by route pattern and error code.',
      labelNames: ['route', 'code'],
      registers: [registry],
    }),
  };
}
