/** Job kinds and their handlers, registered by modules at startup (platform never imports modules). */
import type { BackoffOptions, HandlerOptions, JobHandler } from './types.js';

export interface KindSpec {
  handler: JobHandler;
  maxAttempts: number;
  timeoutMs: number;
  backoff: Required<BackoffOptions>;
  cancellable: boolean;
  keepFinished: boolean;
}

export const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_BACKOFF: Required<BackoffOptions> = { delayMs: 1000, maxDelayMs: 5 * 60_000 };

export class HandlerRegistry {
  private readonly kinds = new Map<string, KindSpec>();

  register<I, R>(kind: string, handler: JobHandler<I, R>, options: HandlerOptions = {}): void {
    if (!/^[a-z][a-z0-9_.-]{0,63}$/.test(kind)) throw new Error(`job kind "${kind}" must be lower-case letters, digits, _ . -`);
    if (this.kinds.has(kind)) throw new Error(`job kind "${kind}" is registered twice`);
    this.kinds.set(kind, {
      // A handler's input type is its own business; the runner passes what was enqueued for that kind.
      handler: handler as JobHandler,
      maxAttempts: Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS),
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
      cancellable: options.cancellable ?? false,
      keepFinished: options.keepFinished ?? false,
    });
  }

  get(kind: string): KindSpec | undefined {
    return this.kinds.get(kind);
  }

  require(kind: string): KindSpec {
    const spec = this.kinds.get(kind);
    if (!spec) throw new Error(`no handler is registered for job kind "${kind}"`);
    return spec;
  }

  names(): string[] {
    return [...this.kinds.keys()];
  }

  /** The kinds whose finished jobs are kept (HandlerOptions.keepFinished). */
  kept(): string[] {
    return [...this.kinds].flatMap(([kind, spec]) => (spec.keepFinished ? [kind] : []));
  }
}

/** Delay before retry number `attempt` (1: the first retry): delay · 2^(attempt-1), capped. */
export function backoffDelay(backoff: Required<BackoffOptions>, attempt: number): number {
  return Math.min(backoff.maxDelayMs, backoff.delayMs * 2 ** Math.max(0, attempt - 1));
}
