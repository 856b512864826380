/** The `ai_edit` job against a fake OpenAI image edit API: success, retries, refusals, timeouts, bad answers. */
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TestServer } from '../../helpers/server.js';
import { RATE_LIMITED, REFUSAL, startFakeOpenAI, type FakeOpenAI } from './fake-openai.js';
import { JPEG, SERVICE, expectFailure, post, startAiServer, startEdit, upload, waitForEnd } from './server.js';
import { cacheKey, type ProcessView } from '../../../src/modules/ai-edits/service.js';
import { until } from '../../helpers/until.js';

let fake: FakeOpenAI;
let server: TestServer;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  server = await startAiServer({ OPENAI_API_KEY: 'sk-test-key', OPENAI_BASE_URL: fake.baseUrl, OPENAI_IMAGE_MODEL: 'gpt-image-1' });
});
afterAll(async () => {
  await server.close();
  await fake.close();
});
beforeEach(() => {
  fake.received.length = 0;
  fake.script.length = 0;
});

async function jobOf(initId: string) {
  const row = await server.ctx.db.kysely.selectFrom('ai_processes').select('job_id').where('init_id', '=', initId).executeTakeFirstOrThrow();
  const job = await server.ctx.jobs.waitFor(row.job_id as string, 20_000);
  return job;
}

async function resultCount(): Promise<number> {
  const rows = await server.ctx.db.kysely.selectFrom('ai_files').select('file_id').where('kind', '=', 'result').execute();
  return rows.length;
}

describe('a successful edit', () => {
  it('sends both images, the prompt and the model, and stores the result with variants', async () => {
    const { initId, book } = await startEdit(server.url, SERVICE, 'Put the child into the castle');
    expect(book.status).toBe(202);
    expect(book.body).toEqual({ success: true, code: 4000, message: 'Processing started', data: { init_id: initId, status: 'processing' } });

    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('completed');
    expect(end.result_url).toMatch(/^\/api\/v1\/files\/[A-Za-z0-9_-]{16,}$/);
    expect(end.error).toBeUndefined();

    expect(fake.received).toHaveLength(1);
    const sent = fake.received[0]!;
    expect(sent.authorization).toBe('Bearer sk-test-key');
    expect(sent.model).toBe('gpt-image-1');
    expect(sent.prompt).toBe('Put the child into the castle');
    expect(sent.images.map((i) => i.field)).toEqual(['image[]', 'image[]']);
    for (const image of sent.images) {
      const meta = await sharp(image.bytes).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 640, 427]);
    }

    const job = await jobOf(initId);
    expect([job.status, job.attempts]).toEqual(['completed', 1]);

    const res = await fetch(`${server.url}${end.result_url}`, { headers: SERVICE });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 96, 64]);
    const thumb = await fetch(`${server.url}${end.result_url}?size=thumb`, { headers: SERVICE });
    expect(thumb.status).toBe(200);
  });

  it('keeps the cache coherent: the job writes the new state into the cache entry', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    await jobOf(initId);
    const entry = await server.ctx.cache.get<ProcessView>(cacheKey(initId));
    expect(entry).toMatchObject({ init_id: initId, status: 'completed' });
    expect(entry?.result_url).toMatch(/^\/api\/v1\/files\//);
  });
});

describe('what may be booked', () => {
  it('refuses a result of an earlier edit as source or target: only the caller\'s uploads are (422 not_your_upload)', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    const done = await waitForEnd(server.url, SERVICE, initId);
    expect(done.status).toBe('completed');
    const own = (await upload(server.url, SERVICE)).body.data.url;
    for (const urls of [
      { source_url: done.result_url, target_url: own },
      { source_url: own, target_url: done.result_url },
    ]) {
      const init = await post<{ init_id: string }>(server.url, '/api/v1/initiate-process', SERVICE);
      const res = await post(server.url, '/api/v1/process/book', SERVICE, { init_id: init.body.data.init_id, ...urls, prompt: 'again' });
      expectFailure(res, 422, 4001, 'not_your_upload');
    }
  });
});

describe('provider failures', () => {
  it('retries a 429 with backoff and then succeeds (attempts 2)', async () => {
    fake.script.push(RATE_LIMITED);
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('completed');
    expect(fake.received).toHaveLength(2);
    const job = await jobOf(initId);
    expect([job.status, job.attempts]).toEqual(['completed', 2]);
  });

  it("holds the retry of a 429 back for the provider's Retry-After", async () => {
    fake.script.push({ ...RATE_LIMITED, retryAfter: '45' });
    const started = Date.now();
    const { initId } = await startEdit(server.url, SERVICE);
    const { job_id: jobId } = await server.ctx.db.kysely.selectFrom('ai_processes').select('job_id').where('init_id', '=', initId).executeTakeFirstOrThrow();
    const row = () => server.ctx.db.kysely.selectFrom('jobs').select(['status', 'attempts', 'run_after']).where('job_id', '=', jobId as string).executeTakeFirstOrThrow();
    const waiting = await until(async () => {
      const now = await row();
      return now.status === 'queued' && now.attempts === 1 && now;
    });
    expect(Date.parse(waiting.run_after) - started).toBeGreaterThanOrEqual(44_000);
    expect(fake.received).toHaveLength(1);
    // Out of the way of the tests after this one, which script the fake's next answers.
    await server.ctx.db.kysely.updateTable('jobs').set({ status: 'cancelled', finished_at: new Date().toISOString() }).where('job_id', '=', jobId as string).execute();
  });

  it('retries a 500 too', async () => {
    fake.script.push({ kind: 'error', status: 500, message: 'The server had an error', type: 'server_error', code: null });
    const { initId } = await startEdit(server.url, SERVICE);
    expect((await waitForEnd(server.url, SERVICE, initId)).status).toBe('completed');
    expect((await jobOf(initId)).attempts).toBe(2);
  });

  it('fails at once on a content-policy refusal, with the provider\'s reason in error', async () => {
    fake.script.push(REFUSAL);
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('failed');
    expect(end.error).toContain('rejected as a result of our safety system');
    expect(end.result_url).toBeUndefined();
    expect(fake.received).toHaveLength(1);
    const job = await jobOf(initId);
    expect([job.status, job.attempts, job.error?.code]).toEqual(['failed', 1, 'content_policy']);
  });

  it('fails at once on another 4xx (an invalid request), with the reason', async () => {
    fake.script.push({ kind: 'error', status: 400, message: 'Invalid image file or mode.', type: 'invalid_request_error', code: 'invalid_image' });
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect([end.status, end.error]).toEqual(['failed', 'The image provider rejected the request (400): Invalid image file or mode.']);
    expect(fake.received).toHaveLength(1);
  });

  it('keeps a key the provider quotes back out of the reason its owner reads', async () => {
    fake.script.push({ kind: 'error', status: 401, message: 'Incorrect API key provided: sk-proj-abc123**********wxyz. You can find your API key in your account.', type: 'invalid_request_error', code: 'invalid_api_key' });
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('failed');
    expect(end.error).toContain('The image provider rejected the request (401): Incorrect API key provided: ');
    expect(end.error).not.toContain('sk-proj');
    expect(end.error).not.toContain('wxyz');
  });

  it('times out a hanging call after OPENAI_TIMEOUT_SECONDS and retries it', async () => {
    fake.script.push({ kind: 'hang' });
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('completed');
    const job = await jobOf(initId);
    expect(job.attempts).toBe(2);
  });

  it('gives a provider call OPENAI_TIMEOUT_SECONDS (1 s here) and no longer before ending it', async () => {
    fake.script.push({ kind: 'hang' });
    const { initId } = await startEdit(server.url, SERVICE);
    expect((await waitForEnd(server.url, SERVICE, initId)).status).toBe('completed');
    const hung = fake.received[0];
    expect(hung?.closedAt).toBeDefined();
    const waited = (hung?.closedAt ?? 0) - (hung?.at ?? 0);
    // The call's timer starts just before the request reaches the fake: a little under 1 s, never much over it.
    expect(waited).toBeGreaterThanOrEqual(700);
    expect(waited).toBeLessThan(2_500);
  });

  it('fails with provider_timeout when every attempt hangs', async () => {
    fake.script.push({ kind: 'hang' }, { kind: 'hang' }, { kind: 'hang' });
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end).toMatchObject({ status: 'failed', error: 'The image provider did not answer in time.' });
    const job = await jobOf(initId);
    // provider_timeout is the client's own timeout (OPENAI_TIMEOUT_SECONDS): the guarded fetch's backstop
    // would end an attempt as provider_unreachable, the job's limit (a minute more) as timeout.
    expect([job.attempts, job.error?.code]).toEqual([3, 'provider_timeout']);
    expect(fake.received).toHaveLength(3);
  });

  it.each([
    ['not_json', 'not valid JSON'],
    ['no_data', 'without an image'],
    ['not_image', 'not a usable image'],
  ] as const)('fails with a clear error on a malformed answer (%s)', async (kind, words) => {
    fake.script.push({ kind });
    const resultsBefore = await resultCount();
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('failed');
    expect(end.error).toContain(words);
    const job = await jobOf(initId);
    expect([job.status, job.attempts]).toEqual(['failed', 1]);
    // Nothing was stored for a bad answer.
    expect(await resultCount()).toBe(resultsBefore);
  });

  it('lets a failed process be booked again', async () => {
    fake.script.push(REFUSAL);
    const { initId } = await startEdit(server.url, SERVICE);
    expect((await waitForEnd(server.url, SERVICE, initId)).status).toBe('failed');
    const a = await upload(server.url, SERVICE, JPEG);
    const again = await post(server.url, '/api/v1/process/book', SERVICE, { init_id: initId, source_url: a.body.data.url, target_url: a.body.data.url, prompt: 'again' });
    expect(again.status).toBe(202);
    expect((await waitForEnd(server.url, SERVICE, initId)).status).toBe('completed');
  });
});

describe('the outbound guard covers the image model too', () => {
  const port = () => new URL(fake.baseUrl).port;

  it('follows a redirect to a private address the operator allowed (127.0.0.1, listed in FETCH_ALLOWED_HOSTS)', async () => {
    // Allowed by the list, not by being the provider's host: the next test sends the same loopback by another name.
    fake.script.push({ kind: 'redirect', location: `http://127.0.0.1:${port()}/v1/images/edits` });
    const { initId } = await startEdit(server.url, SERVICE);
    expect((await waitForEnd(server.url, SERVICE, initId)).status).toBe('completed');
    // The 307 and the request it sent the client on to, with the same multipart body.
    expect(fake.received).toHaveLength(2);
    expect(fake.received[1]?.images).toHaveLength(2);
  });

  it('refuses a redirect to a private address the operator did not configure (localhost by name), at once', async () => {
    // Only 127.0.0.1 is in FETCH_ALLOWED_HOSTS; the same loopback reached by another name is not.
    fake.script.push({ kind: 'redirect', location: `http://localhost:${port()}/v1/images/edits` });
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('failed');
    expect(end.error).toContain('not a public address');
    // The redirected request never left Kiln.
    expect(fake.received).toHaveLength(1);
    const job = await jobOf(initId);
    expect([job.status, job.attempts, job.error?.code]).toEqual(['failed', 1, 'provider_blocked']);
  });

  it('refuses the cloud metadata address behind a redirect', async () => {
    fake.script.push({ kind: 'redirect', location: 'http://169.254.169.254/latest/meta-data/' });
    const { initId } = await startEdit(server.url, SERVICE);
    expect((await waitForEnd(server.url, SERVICE, initId)).status).toBe('failed');
    expect((await jobOf(initId)).error?.code).toBe('provider_blocked');
  });

  it('does not allow a loopback OPENAI_BASE_URL by itself: without FETCH_ALLOWED_HOSTS the edit fails at once, and nothing is sent', async () => {
    const unlisted = await startAiServer({ OPENAI_API_KEY: 'sk-test-key', OPENAI_BASE_URL: fake.baseUrl, FETCH_ALLOWED_HOSTS: '' });
    try {
      expect(unlisted.ctx.config.fetchAllowedHosts).toEqual([]);
      const { initId, book } = await startEdit(unlisted.url, SERVICE);
      expect(book.status).toBe(202);
      const end = await waitForEnd(unlisted.url, SERVICE, initId);
      expect(end.status).toBe('failed');
      // A clear reason: the refused address, and the setting that would allow it.
      expect(end.error).toContain('127.0.0.1 is not a public address');
      expect(end.error).toContain('FETCH_ALLOWED_HOSTS');
      const row = await unlisted.ctx.db.kysely.selectFrom('ai_processes').select('job_id').where('init_id', '=', initId).executeTakeFirstOrThrow();
      const job = await unlisted.ctx.jobs.waitFor(row.job_id as string, 20_000);
      // Permanent: one attempt, no retries against an address that will stay refused.
      expect([job.status, job.attempts, job.error?.code]).toEqual(['failed', 1, 'provider_blocked']);
      expect(fake.received).toEqual([]);
    } finally {
      await unlisted.close();
    }
  });
});

describe('OPENAI_IMAGE_MODEL', () => {
  let custom: TestServer;
  beforeAll(async () => {
    custom = await startAiServer({ OPENAI_API_KEY: 'sk-test-key', OPENAI_BASE_URL: fake.baseUrl, OPENAI_IMAGE_MODEL: 'kiln-test-image-model-2' });
  });
  afterAll(async () => custom.close());

  it('is the model sent to the provider, and the one /api/v1/health names', async () => {
    const { initId } = await startEdit(custom.url, SERVICE);
    expect((await waitForEnd(custom.url, SERVICE, initId)).status).toBe('completed');
    expect(fake.received.map((r) => r.model)).toEqual(['kiln-test-image-model-2']);
    const health = await fetch(`${custom.url}/api/v1/health`);
    expect(((await health.json()) as { data: { model: string } }).data.model).toBe('kiln-test-image-model-2');
  });
});
