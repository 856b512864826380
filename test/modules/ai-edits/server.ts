/**
 * A listening Kiln for the AI-edit tests: the static API_KEY set, the model
 * provider pointed at a fake on 127.0.0.1 (listed in FETCH_ALLOWED_HOSTS, as
 * the outbound guard wants a loopback OPENAI_BASE_URL), the `ai_edit` kind registered
 * with short backoff (injected here, before the app is built), jobs running.
 * Plus small clients for the envelope routes and a database query counter.
 */
import { expect } from 'vitest';
import type { Kysely, KyselyPlugin } from 'kysely';
import type { Clock } from '../../../src/clock.js';
import type { Env } from '../../../src/config.js';
import type { Context } from '../../../src/context.js';
import { registerAiEditJobs } from '../../../src/modules/ai-edits/job.js';
import type { Database } from '../../../src/platform/db/schema.js';
import type { HandlerOptions } from '../../../src/platform/jobs/types.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';

export const STATIC_KEY = 'static-service-key-for-the-ai-edit-tests';
export const SERVICE = { 'x-api-key': STATIC_KEY };
export const FAST: HandlerOptions = { maxAttempts: 3, backoff: { delayMs: 30, maxDelayMs: 100 } };

export const JPEG = fixture('rocket_small_640x427.jpg');

export interface AiServerOptions {
  dataDir?: string;
  /** The server's clock (cache expiry, job times), so a test can move time instead of sleeping. */
  clock?: Clock;
  jobs?: HandlerOptions;
  /** Called after the Context is made and before the app is built (swap the cache, count queries). */
  prepare?: (ctx: Context) => void | Promise<void>;
}

export async function startAiServer(env: Env = {}, options: AiServerOptions = {}): Promise<TestServer> {
  return startServer(
    { API_KEY: STATIC_KEY, OPENAI_TIMEOUT_SECONDS: '1', FETCH_ALLOWED_HOSTS: '127.0.0.1', ...env },
    {
      dataDir: options.dataDir,
      clock: options.clock,
      startJobs: true,
      prepare: async (ctx) => {
        await options.prepare?.(ctx);
        registerAiEditJobs(ctx, options.jobs ?? FAST);
      },
    },
  );
}

export interface Envelope<T = Record<string, unknown>> {
  success: boolean;
  code: number;
  message: string;
  data: T;
}

export interface Answer<T = Record<string, unknown>> {
  status: number;
  type: string | null;
  body: Envelope<T>;
}

async function answer<T>(res: Response): Promise<Answer<T>> {
  return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Envelope<T> };
}

export async function post<T = Record<string, unknown>>(base: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Answer<T>> {
  const init: RequestInit = { method: 'POST', headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  return answer<T>(await fetch(`${base}${path}`, init));
}

export async function get<T = Record<string, unknown>>(base: string, path: string, headers: Record<string, string> = {}): Promise<Answer<T>> {
  return answer<T>(await fetch(`${base}${path}`, { headers }));
}

export interface Uploaded {
  file_id: string;
  path: string;
  url: string;
}

export async function upload(base: string, headers: Record<string, string>, data: Buffer = JPEG, type = 'image/jpeg'): Promise<Answer<Uploaded>> {
  return answer<Uploaded>(await postMultipart(`${base}/api/v1/upload`, [{ field: 'file', filename: 'photo', data, type }], headers));
}

export interface StatusData {
  init_id: string;
  status: string;
  result_url?: string;
  error?: string;
}

/** Initiates a process and books it with two fresh uploads of the caller. */
export async function startEdit(base: string, headers: Record<string, string>, prompt = 'Put the rocket on the page'): Promise<{ initId: string; book: Answer }> {
  const source = await upload(base, headers);
  const target = await upload(base, headers);
  const init = await post<{ init_id: string }>(base, '/api/v1/initiate-process', headers);
  const initId = init.body.data.init_id;
  const book = await post(base, '/api/v1/process/book', headers, { init_id: initId, source_url: source.body.data.url, target_url: target.body.data.url, prompt });
  return { initId, book };
}

/** Polls /process/status until the process is completed or failed. */
export async function waitForEnd(base: string, headers: Record<string, string>, initId: string, timeoutMs = 20_000): Promise<StatusData> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await post<StatusData>(base, '/api/v1/process/status', headers, { init_id: initId });
    if (res.status !== 200) throw new Error(`status: ${res.status} ${JSON.stringify(res.body)}`);
    if (['completed', 'failed'].includes(res.body.data.status)) return res.body.data;
    if (Date.now() > deadline) throw new Error(`process ${initId} still ${res.body.data.status}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Counts the queries run through `ctx.db.kysely` from now on (the request
 * path: the guard, services). The job runner keeps the instance it was given
 * at start, so its polling is not counted.
 */
export function countQueries(ctx: Context): { readonly count: number; reset(): void } {
  let count = 0;
  const plugin: KyselyPlugin = {
    transformQuery: (args) => {
      count++;
      return args.node;
    },
    transformResult: async (args) => args.result,
  };
  (ctx.db as { kysely: Kysely<Database> }).kysely = ctx.db.kysely.withPlugin(plugin);
  return {
    get count() {
      return count;
    },
    reset() {
      count = 0;
    },
  };
}

/** A failure in the envelope: the status, JSON (not problem+json), success false, the route's x001 code and a sentence. */
export function expectFailure(res: { status: number; type: string | null; body: unknown }, status: number, code: number, error?: string): void {
  expect(res.status).toBe(status);
  expect(res.type).toMatch(/^application\/json/);
  const body = res.body as { success: boolean; code: number; message: string; data: { error: string } };
  expect(body.success).toBe(false);
  expect(body.code).toBe(code);
  expect(body.message.length).toBeGreaterThan(5);
  if (error) expect(body.data.error).toBe(error);
  else expect(typeof body.data.error).toBe('string');
}
