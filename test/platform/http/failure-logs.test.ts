/**
 * What a failed request leaves in the log: a 5xx Kiln gives on purpose for a
 * state it knows (here payments without STRIPE_KEY) is one warning with its
 * code and detail and no stack, not an error with a stack on every request.
 * (A 5xx with a cause, the other kind, is logged at level 50 with it:
 * test/modules/payments/routes.test.ts, the guard's refusal of Stripe's address.)
 */
import { describe, expect, it } from 'vitest';
import { logDirectory } from '../../helpers/logs.js';
import { startServer } from '../../helpers/server.js';
import { registerUser } from '../../helpers/users.js';

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  detail?: string;
  err?: unknown;
}

describe('the log line of a failed request', () => {
  it('is a warning with code and detail, without a stack, for a 503 of a feature not configured', async () => {
    const log = logDirectory<LogLine>('info');
    try {
      const server = await startServer(log.env);
      try {
        const user = await registerUser(server.url);
        for (let i = 0; i < 2; i++) {
          const res = await fetch(`${server.url}/payments/create-intent`, { method: 'POST', headers: { ...user.headers, 'content-type': 'application/json' }, body: JSON.stringify({ order_id: 'ord_none' }) });
          expect(res.status).toBe(503);
          expect(((await res.json()) as { code: string }).code).toBe('payments_not_configured');
        }
      } finally {
        await server.close();
      }
      const failed = log.lines().filter((l) => l.msg === 'request failed');
      expect(failed).toHaveLength(2);
      for (const line of failed) {
        expect(line).toMatchObject({ level: 40, code: 'payments_not_configured' });
        expect(line.detail).toContain('STRIPE_KEY');
        expect(line.err).toBeUndefined();
      }
      expect(log.lines().filter((l) => l.level >= 50)).toEqual([]);
    } finally {
      log.remove();
    }
  });
});
