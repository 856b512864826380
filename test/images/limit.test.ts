import { describe, expect, it } from 'vitest';
import { DecodeLimiter, MAX_PASSES, type Lease } from '../../src/images/limit.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('DecodeLimiter', () => {
  it('never runs more than its slots at once', async () => {
    const limiter = new DecodeLimiter(2, 1000);
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        limiter.run(1, async () => {
          running++;
          peak = Math.max(peak, running);
          await tick();
          running--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(limiter.stats).toEqual({ running: 0, queued: 0, usedBytes: 0 });
  });

  /** Starts a task of `cost` that records its start in `order` and runs until its gate opens. */
  function gated(limiter: DecodeLimiter, order: string[], name: string, cost: number, share: 1 | 0.5 = 1): { done: Promise<void>; finish: () => Promise<void> } {
    const gate = deferred();
    const done = limiter.run(
      cost,
      async () => {
        order.push(name);
        await gate.promise;
      },
      share,
    );
    return {
      done,
      finish: async () => {
        gate.resolve();
        await done;
        await tick();
      },
    };
  }

  it('runs two half-core jobs per slot, and a whole-core job only where a whole core is free', async () => {
    const limiter = new DecodeLimiter(2, 1000);
    const order: string[] = [];
    const halves = ['h1', 'h2', 'h3'].map((name) => gated(limiter, order, name, 10, 0.5));
    const whole = gated(limiter, order, 'whole', 10);
    const h4 = gated(limiter, order, 'h4', 10, 0.5);
    await tick();
    // Three halves take 1.5 cores: the whole job does not fit in the half left, a fourth half does (it passes).
    expect(order).toEqual(['h1', 'h2', 'h3', 'h4']);
    expect(limiter.stats).toEqual({ running: 4, queued: 1, usedBytes: 40 });
    await halves[0]?.finish();
    // Half a core free again: still not enough for the whole job.
    expect(order).toEqual(['h1', 'h2', 'h3', 'h4']);
    await halves[1]?.finish();
    expect(order).toEqual(['h1', 'h2', 'h3', 'h4', 'whole']);
    expect(limiter.stats).toEqual({ running: 3, queued: 0, usedBytes: 30 });
    await halves[2]?.finish();
    await h4.finish();
    await whole.finish();
    expect(limiter.stats).toEqual({ running: 0, queued: 0, usedBytes: 0 });
  });

  it('keeps the memory budget and runs an over-budget job alone', async () => {
    const limiter = new DecodeLimiter(4, 100);
    const order: string[] = [];
    const a = gated(limiter, order, 'a', 60);
    const b = gated(limiter, order, 'b', 30);
    const c = gated(limiter, order, 'c', 30);
    const big = gated(limiter, order, 'big', 500);
    await tick();
    // c would take the running total to 120.
    expect(order).toEqual(['a', 'b']);
    expect(limiter.stats).toEqual({ running: 2, queued: 2, usedBytes: 90 });
    await a.finish();
    expect(order).toEqual(['a', 'b', 'c']);
    await b.finish();
    await c.finish();
    expect(order).toEqual(['a', 'b', 'c', 'big']);
    expect(limiter.stats).toEqual({ running: 1, queued: 0, usedBytes: 500 });
    await big.finish();
    expect(limiter.stats).toEqual({ running: 0, queued: 0, usedBytes: 0 });
  });

  it('lets a later job that fits start while the first in line waits for memory', async () => {
    const limiter = new DecodeLimiter(2, 100);
    const order: string[] = [];
    const a = gated(limiter, order, 'a', 60);
    const big = gated(limiter, order, 'big', 70);
    const small = gated(limiter, order, 'small', 30);
    await tick();
    // Without passing, the second slot would stay empty until `a` ends.
    expect(order).toEqual(['a', 'small']);
    await a.finish();
    expect(order).toEqual(['a', 'small', 'big']);
    await small.finish();
    await big.finish();
  });

  it(`lets at most ${MAX_PASSES} later jobs pass one that waits, so a big upload is not starved`, async () => {
    const limiter = new DecodeLimiter(8, 100);
    const order: string[] = [];
    const a = gated(limiter, order, 'a', 50);
    const big = gated(limiter, order, 'big', 60);
    const smalls = Array.from({ length: MAX_PASSES + 2 }, (_, i) => gated(limiter, order, `s${i}`, 10));
    await tick();
    const passed = smalls.slice(0, MAX_PASSES);
    expect(order).toEqual(['a', ...passed.map((_, i) => `s${i}`)]);
    // The rest would fit in the budget too, but must wait behind `big` now.
    expect(limiter.stats.queued).toBe(3);
    await a.finish();
    for (const s of passed) await s.finish();
    expect(order.slice(MAX_PASSES + 1)).toEqual(['big', `s${MAX_PASSES}`, `s${MAX_PASSES + 1}`]);
    await big.finish();
    for (const s of smalls.slice(MAX_PASSES)) await s.finish();
    expect(limiter.stats).toEqual({ running: 0, queued: 0, usedBytes: 0 });
  });

  it('lets a job waiting for memory start once a running one gives back what its decode needed', async () => {
    const limiter = new DecodeLimiter(2, 100);
    const order: string[] = [];
    const decoded = deferred();
    const gate = deferred();
    const progressive = limiter.run(80, async (lease) => {
      order.push('progressive');
      await decoded.promise;
      lease.shrinkTo(30);
      await gate.promise;
    });
    const next = gated(limiter, order, 'next', 60);
    await tick();
    expect(order).toEqual(['progressive']);
    decoded.resolve();
    await tick();
    expect(order).toEqual(['progressive', 'next']);
    expect(limiter.stats).toEqual({ running: 2, queued: 0, usedBytes: 90 });
    gate.resolve();
    await progressive;
    await next.finish();
    expect(limiter.stats).toEqual({ running: 0, queued: 0, usedBytes: 0 });
  });

  it('never lets a lease grow its hold, nor change it after its task ended', async () => {
    const limiter = new DecodeLimiter(2, 100);
    let kept: Lease | undefined;
    await limiter.run(40, async (lease) => {
      lease.shrinkTo(70);
      expect(limiter.stats.usedBytes).toBe(40);
      lease.shrinkTo(-5);
      expect(limiter.stats.usedBytes).toBe(40);
      lease.shrinkTo(10);
      lease.shrinkTo(10);
      expect(limiter.stats.usedBytes).toBe(10);
      kept = lease;
    });
    kept?.shrinkTo(0);
    expect(limiter.stats).toEqual({ running: 0, queued: 0, usedBytes: 0 });
  });

  it('releases its slot when the task fails', async () => {
    const limiter = new DecodeLimiter(1, 100);
    await expect(limiter.run(10, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(limiter.run(10, async () => 'ok')).resolves.toBe('ok');
  });
});
