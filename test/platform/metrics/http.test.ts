import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { DURATION_BUCKETS, HttpMetrics } from '../../../src/platform/metrics/http.js';

/** Durations on and around every bucket bound, and past the last one. */
const SAMPLES: Array<[string, string, number, number]> = [
  ['GET', '/health', 200, 0.0004],
  ['GET', '/health', 200, 0.001],
  ['GET', '/health', 200, 0.0010001],
  ['GET', '/projects/:project_id/images/:image_id', 304, 0.01],
  ['GET', '/projects/:project_id/images/:image_id', 304, 0.3],
  ['POST', '/projects/:project_id/images', 201, 2.5],
  ['POST', '/projects/:project_id/images', 201, 11],
  ['GET', '/health', 503, 0],
];

/** The same answers through prom-client's own Counter and Histogram: the text /metrics must not change. */
async function promClientText(): Promise<string> {
  const registry = new Registry();
  const labelNames = ['method', 'route', 'status'] as const;
  const counter = new Counter({ name: 'kiln_http_requests_total', help: 'HTTP requests answered, by route pattern and status.', labelNames, registers: [registry] });
  const histogram = new Histogram({
    name: 'kiln_http_request_duration_seconds',
    help: 'Time from request to the end of the answer, by route pattern and status.',
    labelNames,
    buckets: [...DURATION_BUCKETS],
    registers: [registry],
  });
  for (const [method, route, status, seconds] of SAMPLES) {
    counter.inc({ method, route, status: String(status) });
    histogram.observe({ method, route, status: String(status) }, seconds);
  }
  return registry.metrics();
}

describe('the HTTP answer metrics', () => {
  it("write exactly what prom-client's Counter and Histogram write for the same answers", async () => {
    const registry = new Registry();
    const http = new HttpMetrics(registry);
    for (const [method, route, status, seconds] of SAMPLES) http.series(method, route, status).observe(seconds);
    expect(await registry.metrics()).toBe(await promClientText());
  });

  it('count an answer in the bucket whose bound it does not exceed', async () => {
    const registry = new Registry();
    const series = new HttpMetrics(registry).series('GET', '/x', 200);
    series.observe(0.001);
    series.observe(0.0010001);
    series.observe(99);
    const text = await registry.metrics();
    expect(text).toContain('kiln_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/x",status="200"} 1\n');
    expect(text).toContain('kiln_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/x",status="200"} 2\n');
    expect(text).toContain('kiln_http_request_duration_seconds_bucket{le="10",method="GET",route="/x",status="200"} 2\n');
    expect(text).toContain('kiln_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/x",status="200"} 3\n');
    expect(text).toContain('kiln_http_request_duration_seconds_count{method="GET",route="/x",status="200"} 3\n');
    expect(text).toContain('kiln_http_requests_total{method="GET",route="/x",status="200"} 3\n');
  });

  it('keep one series per method, route and status, and forget them all on a registry reset', async () => {
    const registry = new Registry();
    const http = new HttpMetrics(registry);
    expect(http.series('GET', '/x', 200)).toBe(http.series('GET', '/x', 200));
    expect(http.series('GET', '/x', 200)).not.toBe(http.series('GET', '/x', 404));
    http.series('GET', '/x', 200).observe(0.5);
    registry.resetMetrics();
    expect(await registry.metrics()).not.toContain('route="/x"');
  });

  it('label a method no route answers as `other`, so 35 methods cannot make 35 series per path', async () => {
    const registry = new Registry();
    const http = new HttpMetrics(registry);
    for (const method of ['PROPFIND', 'MKCOL', 'LINK', 'M-SEARCH']) http.series(method, 'unmatched', 404).observe(0.001);
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) http.series(method, 'unmatched', 404).observe(0.001);
    const text = await registry.metrics();
    const counts = text.split('\n').filter((line) => line.startsWith('kiln_http_requests_total{'));
    expect(counts).toContain('kiln_http_requests_total{method="other",route="unmatched",status="404"} 4');
    expect(counts).toHaveLength(8);
    expect(text).not.toMatch(/PROPFIND|MKCOL|M-SEARCH|method="LINK"/);
  });
});
