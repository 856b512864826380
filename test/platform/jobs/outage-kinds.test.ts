/**
 * What outageOf (platform/jobs/outage.ts) takes for an outage, to be retried
 * rather than failed as a bug: here, a disk or SQLite database with no room
 * left, which freed space cures.
 */
import { describe, expect, it } from 'vitest';
import { outageOf } from '../../../src/platform/jobs/outage.js';
import { TransientJobError } from '../../../src/platform/jobs/index.js';

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('outageOf', () => {
  it('takes a full disk or database for storage_full, worth another attempt, found in the cause chain too', () => {
    for (const err of [errno('ENOSPC', 'ENOSPC: no space left on device, write'), errno('EDQUOT', 'quota'), new Error('insert failed', { cause: errno('SQLITE_FULL', 'database or disk is full') })]) {
      const outage = outageOf(err);
      expect(outage).toBeInstanceOf(TransientJobError);
      expect(outage).toMatchObject({ code: 'storage_full', detail: 'The server had no room left to store what the job made.' });
    }
  });

  it('leaves a mistake of the job alone: not an outage', () => {
    expect(outageOf(errno('ENOENT', 'no such file'))).toBeUndefined();
    expect(outageOf(new TypeError('x is undefined'))).toBeUndefined();
  });
});
