import type { Context } from '../../context.js';
import { causeChain, storageFailureKind } from '../../platform/failures.js';

export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  timestamp: string;
  checks: Record<string, { ok: boolean; ms: number; error?: string }>;
}

type Probe = () => Promise<void>;

const TIMEOUT_MS = 3000;

class ProbeTimeout extends Error {}

/** What a failed probe's answer says: its kind only (no paths, no connection strings), from the codes of the error and its causes. */
function kindOf(err: unknown): string {
  if (err instanceof ProbeTimeout) return 'timed out';
  for (const e of causeChain(err)) {
    const kind = storageFailureKind(e);
    if (kind) return kind;
  }
  return 'unreachable';
}

/** A check's result, with (for the log only) what failed it. */
type Timed = { ok: boolean; ms: number; error?: string; cause?: unknown };

async function timed(probe: Probe): Promise<Timed> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ProbeTimeout('timed out')), TIMEOUT_MS);
      }),
    ]);
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { ok: false, ms: Math.round(performance.now() - started), error: kindOf(err), cause: err };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The log's side of the health checks: a warning with each failing check's
 * cause when a check starts failing, an info line when all pass again;
 * nothing while the state holds, however often a monitor asks.
 */
export class HealthLog {
  private failing = new Set<string>();

  constructor(private readonly log: Context['log']) {}

  note(results: Record<string, Timed>): void {
    const now = new Set(Object.keys(results).filter((name) => !results[name]?.ok));
    const started = [...now].filter((name) => !this.failing.has(name));
    if (started.length > 0) {
      const causes = Object.fromEntries(started.map((name) => [name, { error: results[name]?.error, err: results[name]?.cause }]));
      this.log.warn({ checks: causes }, `health check failing: ${started.join(', ')}`);
    }
    if (now.size === 0 && this.failing.size > 0) this.log.info({ checks: [...this.failing] }, 'health checks pass again');
    this.failing = now;
  }
}

/** Probes every dependency a request needs; unhealthy when any fails. `log` hears of checks that start or stop failing. */
export async function checkHealth(ctx: Context, extra: Record<string, Probe> = {}, log?: HealthLog): Promise<HealthReport> {
  const probes: Record<string, Probe> = {
    database: () => ctx.db.ping(),
    blob_store: () => ctx.blobs.healthCheck(),
    ...extra,
  };
  const names = Object.keys(probes);
  const results = await Promise.all(names.map((n) => timed(probes[n] as Probe)));
  log?.note(Object.fromEntries(names.map((n, i) => [n, results[i] as Timed])));
  // The answer says which kind of failure, never its cause.
  const checks = Object.fromEntries(names.map((n, i) => [n, withoutCause(results[i] as Timed)]));
  return {
    status: results.every((r) => r.ok) ? 'healthy' : 'unhealthy',
    timestamp: ctx.clock.now().toISOString(),
    checks,
  };
}

function withoutCause({ cause: _cause, ...check }: Timed): { ok: boolean; ms: number; error?: string } {
  return check;
}
