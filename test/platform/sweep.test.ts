/** PeriodicSweep's timing (platform/sweep.ts), on faked timers: nothing else runs in these tests. */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deleteInPages, PeriodicSweep } from '../../src/platform/sweep.js';
import { capturingLog } from '../helpers/logs.js';

const HOUR_MS = 60 * 60_000;

describe('PeriodicSweep', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs a minute after the start, then every interval, and not after stop', async () => {
    let runs = 0;
    const sweep = new PeriodicSweep(pino({ level: 'silent' }), 'counting', HOUR_MS, async () => ++runs);
    sweep.start();
    sweep.start();
    await vi.advanceTimersByTimeAsync(59_000);
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(HOUR_MS - 60_000);
    expect(runs).toBe(2);
    await vi.advanceTimersByTimeAsync(HOUR_MS);
    expect(runs).toBe(3);
    await sweep.stop();
    await vi.advanceTimersByTimeAsync(3 * HOUR_MS);
    expect(runs).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('with an interval of a minute or less, runs only on the interval', async () => {
    let runs = 0;
    const sweep = new PeriodicSweep(pino({ level: 'silent' }), 'counting', 60_000, async () => ++runs);
    sweep.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toBe(2);
    await sweep.stop();
  });

  it('shares a run under way with a second caller, and waits for it on stop', async () => {
    let finish = (_n: number): void => undefined;
    let started = 0;
    const sweep = new PeriodicSweep(pino({ level: 'silent' }), 'slow', HOUR_MS, () => {
      started += 1;
      return new Promise<number>((resolve) => (finish = resolve));
    });
    const [a, b] = [sweep.run(), sweep.run()];
    expect(started).toBe(1);
    let stopped = false;
    const stopping = sweep.stop().then(() => (stopped = true));
    await Promise.resolve();
    expect(stopped).toBe(false);
    finish(7);
    expect(await Promise.all([a, b])).toEqual([7, 7]);
    await stopping;
    expect(stopped).toBe(true);
  });

  it('logs a failed run and runs again at the next tick', async () => {
    const { log, lines } = capturingLog();
    let runs = 0;
    const sweep = new PeriodicSweep(log, 'pruning things', HOUR_MS, async () => {
      runs += 1;
      if (runs === 1) throw new Error('database away');
      return 0;
    });
    sweep.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'pruning things failed' }));
    await vi.advanceTimersByTimeAsync(HOUR_MS);
    expect(runs).toBe(2);
    await sweep.stop();
  });
});

describe('deleteInPages', () => {
  it('deletes page after page until one is empty, and lets other work run between pages', async () => {
    // Pages that resolve at once, as SQLite's do (its statements run on the event loop): without a
    // turn between pages, a long backlog held every request until the last page.
    let left = 50;
    let pagesBeforeOtherWork = -1;
    setImmediate(() => (pagesBeforeOtherWork = 50 - left));
    const deleted = await deleteInPages(async () => {
      const page = Math.min(left, 1);
      left -= page;
      return page;
    });
    expect(deleted).toBe(50);
    expect(pagesBeforeOtherWork).toBeGreaterThanOrEqual(1);
    expect(pagesBeforeOtherWork).toBeLessThan(3);
  });
});
