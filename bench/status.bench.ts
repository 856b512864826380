/**
 * AI-edit status polling: POST /api/v1/process/status at 16 connections for
 * 10 s each, against a completed process whose state is in the TTL cache
 * (with the static API_KEY, and with a user's API key), against the same
 * process with the cache bypassed (every answer reads the database), and
 * GET /health beside them. Kiln runs in a child process (SQLite, memory
 * cache), autocannon in this one; the model provider is the tests' fake.
 * Figures, never pass/fail.
 *
 *   node --import tsx bench/status.bench.ts          (or `npm run bench -- status`)
 *   node --import tsx bench/status.bench.ts --serve cached|uncached   (internal: the server)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createContext } from '../src/context.js';
import { registerAiEditJobs } from '../src/modules/ai-edits/job.js';
import type { TtlCache } from '../src/platform/cache/index.js';
import { startFakeOpenAI } from '../test/modules/ai-edits/fake-openai.js';
import { fixture, postMultipart } from '../test/helpers/upload.js';
import { fmt, table } from './lib/measure.js';

const SELF = fileURLToPath(import.meta.url);
const KEY = 'bench-static-key-for-the-status-bench';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = 16;

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}
type Cannon = (opts: { url: string; connections: number; duration: number; method?: string; headers?: Record<string, string>; body?: string }) => Promise<CannonResult>;
// autocannon ships no types; this is the part of its API used here.
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;

/** A pass-through cache: every status answer reads the database. */
const noCache: TtlCache = {
  get: async () => undefined,
  set: async () => undefined,
  delete: async () => false,
  stats: async () => ({ size: 0, max_size: 0, ttl_seconds: 0, hits: 0, misses: 0, evictions: 0, entries: [] }),
  close: async () => undefined,
};

async function serve(mode: string): Promise<void> {
  const config = loadConfig(process.env);
  const ctx = await createContext(config);
  if (mode === 'uncached') ctx.cache = noCache;
  // Idempotent: whichever of this and the app's own registration comes first wins.
  registerAiEditJobs(ctx);
  const app = await buildApp(ctx);
  await app.listen({ host: '127.0.0.1', port: 0 });
  await ctx.jobs.start();
  const address = app.server.address() as { port: number };
  process.stdout.write(`READY ${address.port}\n`);
  process.once('SIGTERM', () => {
    void app.close().then(() => ctx.close()).then(() => process.exit(0));
  });
}

interface Server {
  url: string;
  child: ChildProcess;
  dir: string;
}

async function startServer(mode: 'cached' | 'uncached', openaiBase: string): Promise<Server> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-status-'));
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--serve', mode], {
    env: {
      ...process.env,
      DATA_DIR: dir,
      API_KEY: KEY,
      OPENAI_API_KEY: 'sk-bench',
      OPENAI_BASE_URL: openaiBase,
      // The fake model listens on the loopback, which the outbound guard refuses unless listed.
      FETCH_ALLOWED_HOSTS: '127.0.0.1',
      LOG_LEVEL: 'silent',
      RATE_LIMIT_AUTH: '0',
      RATE_LIMIT_UPLOAD: '0',
      RATE_LIMIT_DEFAULT: '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, child, dir };
}

async function stopServer(s: Server): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
  rmSync(s.dir, { recursive: true, force: true });
}

async function json(res: Response): Promise<{ data: Record<string, string> }> {
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as { data: Record<string, string> };
}

/** A completed edit owned by whoever `headers` authenticate. */
async function completedProcess(base: string, headers: Record<string, string>): Promise<string> {
  const photo = fixture('rocket_small_640x427.jpg');
  const url = async () => (await json(await postMultipart(`${base}/api/v1/upload`, [{ field: 'file', filename: 'a.jpg', data: photo }], headers))).data.url as string;
  const [source, target] = [await url(), await url()];
  const initId = (await json(await fetch(`${base}/api/v1/initiate-process`, { method: 'POST', headers }))).data.init_id as string;
  const post = (p: string, body: unknown) => fetch(`${base}${p}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await json(await post('/api/v1/process/book', { init_id: initId, source_url: source, target_url: target, prompt: 'bench' }));
  for (;;) {
    const status = (await json(await post('/api/v1/process/status', { init_id: initId }))).data.status;
    if (status === 'completed') return initId;
    if (status === 'failed') throw new Error('the bench edit failed');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A user with an API key (the key the guard looks up in the database on every request). */
async function userKey(base: string): Promise<Record<string, string>> {
  const cred = { email: 'bench@example.com', username: 'bench', password: 'bench-password-1' };
  const jsonPost = (p: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${p}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await jsonPost('/auth/register', cred);
  const { access_token } = (await (await jsonPost('/auth/login', cred)).json()) as { access_token: string };
  const { key } = (await (await jsonPost('/auth/api-keys', { name: 'bench' }, { authorization: `Bearer ${access_token}` })).json()) as { key: string };
  return { 'x-api-key': key };
}

async function measure(name: string, opts: Parameters<Cannon>[0]): Promise<Array<string | number>> {
  await autocannon({ ...opts, duration: 1 }); // warm-up: JIT, connections, the first cache fill
  const r = await autocannon({ ...opts, connections: CONNECTIONS, duration: SECONDS });
  return [name, fmt(r.requests.average, 0), fmt(r.latency.p50, 1), fmt(r.latency.p99, 1), r.non2xx + r.errors];
}

async function main(): Promise<void> {
  const fake = await startFakeOpenAI();
  const rows: Array<Array<string | number>> = [];
  const service = { 'x-api-key': KEY };
  const statusOf = (base: string, initId: string, headers: Record<string, string>) => ({
    url: `${base}/api/v1/process/status`,
    connections: CONNECTIONS,
    duration: SECONDS,
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ init_id: initId }),
  });
  try {
    const cached = await startServer('cached', fake.baseUrl);
    try {
      const initId = await completedProcess(cached.url, service);
      const user = await userKey(cached.url);
      const userInit = await completedProcess(cached.url, user);
      rows.push(await measure('GET /health', { url: `${cached.url}/health`, connections: CONNECTIONS, duration: SECONDS }));
      rows.push(await measure('status, cached (static API_KEY)', statusOf(cached.url, initId, service)));
      rows.push(await measure('status, cached (user API key)', statusOf(cached.url, userInit, user)));
    } finally {
      await stopServer(cached);
    }
    const uncached = await startServer('uncached', fake.baseUrl);
    try {
      const initId = await completedProcess(uncached.url, service);
      rows.push(await measure('status, uncached (static API_KEY)', statusOf(uncached.url, initId, service)));
    } finally {
      await stopServer(uncached);
    }
  } finally {
    await fake.close();
  }
  console.log(`POST /api/v1/process/status vs GET /health: ${CONNECTIONS} connections, ${SECONDS} s each, SQLite, memory cache, ${os.availableParallelism()} cores\n`);
  console.log(table(['what', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx'], rows));
  const health = Number(rows[0]?.[1]);
  const hit = Number(rows[1]?.[1]);
  console.log(`\ncached status (static key) / health: ${fmt((100 * hit) / health, 0)}%`);
}

if (process.argv[2] === '--serve') await serve(process.argv[3] ?? 'cached');
else await main();
