/** A photogrammetry run's progress bar: each stage's share of it, and the writer that reports it. */
import type { JobContext } from '../../platform/jobs/index.js';
import type { Stage } from './service.js';

/** Progress range of each stage. */
const RANGES: Readonly<Record<Stage, readonly [number, number]>> = {
  features: [0, 0.3],
  matching: [0.3, 0.55],
  mapping: [0.55, 0.85],
  meshing: [0.85, 0.9],
  export: [0.9, 1],
};

/**
 * Writes progress without holding COLMAP's output up: reports are chained,
 * and skipped unless they move the bar by a percent or change the stage.
 */
export class Progress {
  private last = { stage: '', value: -1 };
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = null;

  constructor(private readonly job: JobContext) {}

  /** `fraction` (0-1) of the way through `stage`. */
  set(stage: Stage, fraction: number): void {
    const [from, to] = RANGES[stage];
    const value = from + (to - from) * Math.min(1, Math.max(0, fraction));
    if (stage === this.last.stage && value - this.last.value < 0.01) return;
    this.last = { stage, value };
    this.chain = this.chain.then(() => this.job.report(value, { stage })).catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  /** Waits for the reports sent so far; a failed write (lease lost) fails the run. */
  async flush(): Promise<void> {
    await this.chain;
    if (this.failure !== null) throw this.failure;
  }
}
