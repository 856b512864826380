/**
 * Small pieces every HTTP bench prints: the machine line (figures mean
 * nothing without it) and a target verdict. Benches print; they never fail on time.
 */
import os from 'node:os';

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `machine: ${os.availableParallelism()} cores (${cpu}), ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}, ${os.platform()} ${os.release()}; load average ${os.loadavg()[0]?.toFixed(1)} (other work on the machine colours every figure)`;
}

/** "met" / "NOT met" beside a target; "n/a" when the figure could not be measured. */
export function verdict(ok: boolean | null): string {
  return ok === null ? 'n/a' : ok ? 'met' : 'NOT met';
}
