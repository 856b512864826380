/**
 * How the provider's refusals end a job: every 4xx but 408/409/429 fails it at
 * once; one that says Kiln's key is not taken (401, 403) is the operator's to
 * mend, so the runner logs it as a warning (platform/jobs/execute.ts).
 */
import { describe, expect, it } from 'vitest';
import { PermanentJobError } from '../../../src/platform/jobs/index.js';
import { classify } from '../../../src/modules/ai-edits/provider.js';

const sdk = await import('openai');
const refusal = (status: number, message: string) => sdk.APIError.generate(status, { error: { message, type: 'invalid_request_error' } }, message, new Headers());

describe('a provider refusal', () => {
  it("is the operator's when it refuses Kiln's key (401, 403), the job's otherwise (400, 404)", () => {
    for (const [status, forOperator] of [[401, true], [403, true], [400, false], [404, false]] as const) {
      const ended = classify(refusal(status, 'Incorrect API key provided.'), sdk);
      expect(ended, String(status)).toBeInstanceOf(PermanentJobError);
      expect(ended, String(status)).toMatchObject({ code: 'provider_rejected', forOperator });
    }
  });
});
