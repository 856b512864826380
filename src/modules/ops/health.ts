import type { Context } from '../../context.js';

export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  timestamp: string;
  checks: Record<string, { ok: boolean; ms: number; error?: string }>;
}

type Probe = () => Promise<void>;

const TIMEOUT_MS = 3000;

async function timed(probe: Probe): Promise<{ ok: boolean; ms: number; error?: string }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), TIMEOUT_MS);
      }),
    ]);
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    // Only the kind of failure leaves the process: no paths, no connection strings.
    const error = err instanceof Error && err.message === 'timed out' ? 'timed out' : 'unreachable';
    return { ok: false, ms: Math.round(performance.now() - started), error };
  } finally {
    clearTimeout(timer);
  }
}

/** Probes every dependency a request needs; unhealthy when any fails. */
export async function checkHealth(ctx: Context, extra: Record<string, Probe> = {}): Promise<HealthReport> {
  const probes: Record<string, Probe> = {
    database: () => ctx.db.ping(),
    blob_store: () => ctx.blobs.healthCheck(),
    ...extra,
  };
  const names = Object.keys(probes);
  const results = await Promise.all(names.map((n) => timed(probes[n] as Probe)));
  const checks = Object.fromEntries(names.map((n, i) => [n, results[i] as { ok: boolean; ms: number; error?: string }]));
  return {
    status: results.every((r) => r.ok) ? 'healthy' : 'unhealthy',
    timestamp: ctx.clock.now().toISOString(),
    checks,
  };
}
