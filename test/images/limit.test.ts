import { describe, expect, it } from 'vitest';
import { DecodeLimiter } from '../../src/images/limit.js';

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

  it('keeps the memory budget, runs an over-budget job alone, and stays first come first served', async () => {
    const limiter = new DecodeLimiter(4, 100);
    const order: string[] = [];
    const gates = { a: deferred(), big: deferred(), c: deferred() };
    const a = limiter.run(60, async () => {
      order.push('a');
      await gates.a.promise;
    });
    const big = limiter.run(500, async () => {
      order.push('big');
      await gates.big.promise;
    });
    const c = limiter.run(10, async () => {
      order.push('c');
      await gates.c.promise;
    });
    await tick();
    // `c` would fit beside `a`, but must not overtake `big`.
    expect(order).toEqual(['a']);
    gates.a.resolve();
    await a;
    await tick();
    expect(order).toEqual(['a', 'big']);
    expect(limiter.stats.running).toBe(1);
    gates.big.resolve();
    gates.c.resolve();
    await Promise.all([big, c]);
    expect(order).toEqual(['a', 'big', 'c']);
  });

  it('releases its slot when the task fails', async () => {
    const limiter = new DecodeLimiter(1, 100);
    await expect(limiter.run(10, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(limiter.run(10, async () => 'ok')).resolves.toBe('ok');
  });
});
