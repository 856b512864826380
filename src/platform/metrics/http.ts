/**
 * The two metrics every HTTP answer updates: a request counter and a
 * duration histogram by method, route pattern and status. Each series is a
 * few plain numbers, updated with arithmetic on every answer and turned into
 * prom-client's form only when /metrics is read. prom-client's own Counter
 * and Histogram hash the label set and look it up on every inc() and
 * observe(), which cost about an eighth of the instructions of a cached
 * image answer (docs/performance.md, "Serving").
 *
 * The count of a series is both `kiln_http_requests_total` and the
 * histogram's `_count`, so the two can never disagree.
 */
import type { Metric, Registry } from 'prom-client';

export interface HttpLabels {
  method: string;
  route: string;
  status: string;
}

export const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The methods a route of Kiln answers, each its own label value. */
const METHOD_LABELS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** One method, route and status. */
export class HttpSeries {
  count = 0;
  /** Seconds, over all answers. */
  sum = 0;
  /** Answers per bucket (not cumulative): index i counts durations in (bounds[i-1], bounds[i]]; the last, those above every bound. */
  readonly perBucket: Float64Array;

  constructor(
    readonly labels: Readonly<HttpLabels>,
    private readonly bounds: readonly number[],
  ) {
    this.perBucket = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    this.count += 1;
    this.sum += seconds;
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i += 1;
    this.perBucket[i] = (this.perBucket[i] as number) + 1;
  }
}

type LabelSet = Record<string, string | number>;

interface ExportedValue {
  labels: LabelSet;
  value: number;
  metricName?: string;
}

/** What prom-client's Registry reads of a metric (name, help, type, aggregator, get(), reset()), computed from the series on demand. */
class ExportedMetric {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly values: () => ExportedValue[],
    readonly reset: () => void,
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: ExportedValue[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() };
  }
}

export class HttpMetrics {
  /** Method → route → status → series: nested maps, so that a lookup builds no key string. */
  private readonly byMethod = new Map<string, Map<string, Map<number, HttpSeries>>>();
  private readonly all: HttpSeries[] = [];

  constructor(
    registry: Registry,
    private readonly bounds: readonly number[] = DURATION_BUCKETS,
  ) {
    const reset = (): void => {
      this.byMethod.clear();
      this.all.length = 0;
    };
    const requests = new ExportedMetric('kiln_http_requests_total', 'HTTP requests answered, by route pattern and status.', 'counter', () => this.counterValues(), reset);
    const durations = new ExportedMetric(
      'kiln_http_request_duration_seconds',
      'Time from request to the end of the answer, by route pattern and status.',
      'histogram',
      () => this.histogramValues('kiln_http_request_duration_seconds'),
      reset,
    );
    // prom-client types a Metric as the union of its four classes; its Registry reads only what ExportedMetric has.
    registry.registerMetric(requests as unknown as Metric);
    registry.registerMetric(durations as unknown as Metric);
  }

  /**
   * The series of one method, route and status, made on first use. A method
   * outside METHOD_LABELS counts as `other`: Node accepts 35 methods, and an
   * anonymous client sending each of them to an unknown path would add series
   * to every scrape.
   */
  series(requestMethod: string, route: string, status: number): HttpSeries {
    const method = METHOD_LABELS.has(requestMethod) ? requestMethod : 'other';
    let byRoute = this.byMethod.get(method);
    if (!byRoute) this.byMethod.set(method, (byRoute = new Map()));
    let byStatus = byRoute.get(route);
    if (!byStatus) byRoute.set(route, (byStatus = new Map()));
    let series = byStatus.get(status);
    if (!series) {
      series = new HttpSeries({ method, route, status: String(status) }, this.bounds);
      byStatus.set(status, series);
      this.all.push(series);
    }
    return series;
  }

  private counterValues(): ExportedValue[] {
    return this.all.map((s) => ({ labels: { ...s.labels }, value: s.count }));
  }

  /** As prom-client writes a histogram: cumulative `_bucket` lines with `le` first, then `+Inf`, `_sum` and `_count`. */
  private histogramValues(name: string): ExportedValue[] {
    const values: ExportedValue[] = [];
    for (const s of this.all) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.perBucket[i] as number;
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${name}_count` });
    }
    return values;
  }
}
