/**
 * The image model: OpenAI's image edit API through the official `openai`
 * client (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_IMAGE_MODEL), so any
 * compatible endpoint works. Its requests go through Kiln's guarded fetch
 * (`providerFetch`). The client's own retries are off: retrying is
 * the job system's business, with its backoff and its attempt count. Every
 * failure leaves as a TransientJobError (worth another attempt: 429, 5xx,
 * timeouts, connection failures) or a PermanentJobError (the provider said
 * no: a content-policy refusal, any other 4xx, an answer without an image).
 */
import type { APIError, OpenAI } from 'openai';
import type { Config } from '../../config.js';
import { findFetchError, retryAfterMs } from '../../platform/fetch/errors.js';
import { guardedWebFetch, type WebFetch } from '../../platform/fetch/web.js';
import { PermanentJobError, TransientJobError } from '../../platform/jobs/errors.js';
import { scrubString } from '../../platform/log/index.js';

export interface EditInput {
  prompt: string;
  /** The subject (first) and the illustration to put it in (second); JPEG bytes. */
  images: ReadonlyArray<{ name: string; data: Buffer }>;
}

export interface ImageEditor {
  readonly model: string;
  /** The edited image's bytes as the provider sent them (not yet validated). */
  edit(input: EditInput, signal: AbortSignal): Promise<Buffer>;
}

export const DEFAULT_BASE_URL = 'https://api.openai.com/v1';
const REFUSALS = new Set(['content_policy_violation', 'moderation_blocked']);

type OpenAIModule = typeof import('openai');

// openai is loaded by the first edit, not at server start: most processes never call the provider.
const loadOpenAI = (): Promise<OpenAIModule> => import('openai');

export const NO_KEY_MESSAGE = 'AI edits are not configured on this server: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, OPENAI_IMAGE_MODEL) and restart.';

/** The answer holds the edited image as base64 JSON: room for a result of job.ts's 64 MiB, and the JSON around it. */
const MAX_ANSWER_BYTES = 96 * 1024 * 1024;

/**
 * The client's `fetch`: Kiln's guarded fetch, like every other outbound
 * request. Only FETCH_ALLOWED_HOSTS may be private: an OPENAI_BASE_URL on the
 * private network or the loopback (a compatible endpoint of the operator's)
 * must be listed there like any other private host, and a redirect anywhere
 * else private is refused.
 */
export function providerFetch(config: Pick<Config, 'openai' | 'fetchAllowedHosts'>): WebFetch {
  const { timeoutSeconds } = config.openai;
  // The client's own timeout (its abort) is the one that fires; this one only backs it up.
  return guardedWebFetch({ allowedHosts: config.fetchAllowedHosts, maxBytes: MAX_ANSWER_BYTES, totalTimeoutMs: timeoutSeconds * 1000 + 5_000 });
}

/** The editor a deployment is configured for, or null when OPENAI_API_KEY is unset. */
export function createImageEditor(config: Pick<Config, 'openai' | 'fetchAllowedHosts'>): ImageEditor | null {
  const { apiKey, baseUrl, imageModel, timeoutSeconds } = config.openai;
  if (!apiKey) return null;
  let client: OpenAI | undefined;
  return {
    model: imageModel,
    async edit(input, signal) {
      const sdk = await loadOpenAI();
      client ??= new sdk.OpenAI({
        apiKey,
        baseURL: baseUrl ?? DEFAULT_BASE_URL,
        timeout: timeoutSeconds * 1000,
        maxRetries: 0,
        fetch: providerFetch(config),
      });
      let answer: unknown;
      try {
        const image = await Promise.all(input.images.map((i) => sdk.toFile(i.data, i.name, { type: 'image/jpeg' })));
        answer = await client.images.edit({ model: imageModel, prompt: input.prompt, image }, { signal });
      } catch (err) {
        throw classify(err, sdk);
      }
      return decodeAnswer(answer);
    },
  };
}

function providerReason(err: APIError): string {
  const body = err.error as { message?: unknown } | undefined;
  const reason = typeof body?.message === 'string' && body.message !== '' ? body.message : err.message;
  // The reason reaches the process's owner: no key the provider quotes back (a wrong key's "sk-…wxyz") goes with it.
  return scrubString(reason);
}

/** Maps what the client threw to the job system's two kinds of failure; `sdk` is the loaded openai module. */
export function classify(err: unknown, sdk: OpenAIModule): Error {
  const { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } = sdk;
  // Our own abort (job timeout, cancel, shutdown): the job system already knows why; pass it on untouched.
  if (err instanceof APIUserAbortError) return err;
  if (err instanceof APIConnectionTimeoutError) {
    return new TransientJobError('provider_timeout', 'The image provider did not answer in time.');
  }
  if (err instanceof APIConnectionError) {
    // The guard said no (a private OPENAI_BASE_URL not listed, a redirect to a private address, an answer over the cap): another attempt would hear the same.
    const refused = findFetchError(err);
    if (refused && !refused.transient) {
      if (refused.code === 'too_large' || refused.code === 'too_many_redirects') {
        return new PermanentJobError('provider_bad_answer', `The image provider's answer was refused: ${refused.message}`);
      }
      return new PermanentJobError('provider_blocked', `Kiln's outbound guard refused the request to the image provider: ${refused.message}`, true);
    }
    return new TransientJobError('provider_unreachable', 'The image provider could not be reached.');
  }
  if (err instanceof APIError) {
    const status = err.status ?? 0;
    const reason = providerReason(err);
    const wait = retryAfterMs(err.headers?.get('retry-after'));
    if (status === 429) return new TransientJobError('provider_rate_limited', `The image provider is rate limiting us: ${reason}`, wait);
    if (status >= 500 || status === 408 || status === 409) {
      return new TransientJobError('provider_error', `The image provider failed (${status}): ${reason}`, wait);
    }
    if (REFUSALS.has(String(err.code ?? '')) || REFUSALS.has(String(err.type ?? ''))) {
      return new PermanentJobError('content_policy', `The image provider refused the request: ${reason}`);
    }
    // A key the provider does not take (revoked, wrong, without access to the model) fails every edit until it is mended.
    return new PermanentJobError('provider_rejected', `The image provider rejected the request (${status}): ${reason}`, status === 401 || status === 403);
  }
  if (err instanceof SyntaxError) {
    return new PermanentJobError('provider_bad_answer', 'The image provider answered with something that is not valid JSON.');
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** The image in an `{created, data: [{b64_json}]}` answer; anything else is a clear, permanent failure. */
export function decodeAnswer(answer: unknown): Buffer {
  if (typeof answer !== 'object' || answer === null) {
    throw new PermanentJobError('provider_bad_answer', 'The image provider answered without JSON.');
  }
  const data = (answer as { data?: unknown }).data;
  const first = Array.isArray(data) ? (data[0] as { b64_json?: unknown } | undefined) : undefined;
  const b64 = first?.b64_json;
  if (typeof b64 !== 'string' || b64 === '') {
    throw new PermanentJobError('provider_bad_answer', 'The image provider answered without an image (no data[0].b64_json).');
  }
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length === 0) throw new PermanentJobError('provider_bad_answer', 'The image provider sent an empty image.');
  return bytes;
}
