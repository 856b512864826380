import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { forEachLimited } from '../../src/platform/concurrency.js';

describe('forEachLimited', () => {
  it('runs every item, never more than the limit at once, and as many as the limit when there are', async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await forEachLimited([...Array(40).keys()], 6, async (n) => {
      running++;
      most = Math.max(most, running);
      await sleep(n % 3);
      running--;
      done.push(n);
    });
    expect(done.sort((a, b) => a - b)).toEqual([...Array(40).keys()]);
    expect(most).toBe(6);
  });

  it('tries every item when one fails, then rejects with the first failure, nothing left running', async () => {
    let running = 0;
    const tried: number[] = [];
    const outcome = forEachLimited([1, 2, 3, 4, 5, 6], 2, async (n) => {
      running++;
      tried.push(n);
      await sleep(1);
      running--;
      if (n === 2 || n === 5) throw new Error(`item ${n}`);
    });
    await expect(outcome).rejects.toThrow('item 2');
    expect(tried.sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(running).toBe(0);
  });

  it('does nothing for no items', async () => {
    let calls = 0;
    await forEachLimited([], 4, async () => void calls++);
    expect(calls).toBe(0);
  });
});
