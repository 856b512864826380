import type { AddressInfo } from 'node:net';
import { buildApp, type App } from '../../src/app.js';
import type { Env } from '../../src/config.js';
import { createContext, type Context } from '../../src/context.js';
import type { Clock } from '../../src/clock.js';
import { tempDataDir, testConfig } from './config.js';
import { dropRedisPrefix, newPrefix } from './redis.js';

export interface TestServer {
  url: string;
  app: App;
  ctx: Context;
  dataDir: string;
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  /** Share another server's DATA_DIR (its SQLite file and blobs): two processes' worth of Kiln. */
  dataDir?: string;
  /**
   * Runs after the Context is made and before the app is built: register a
   * job kind with a test's short backoff, count queries, swap a part. May
   * return a Context to use instead (one with another job runner, say).
   */
  prepare?: (ctx: Context) => void | Context | Promise<void | Context>;
  /** Start the job runner, as `kiln serve` does (off by default: most tests run no jobs). */
  startJobs?: boolean;
}

/**
 * A real Kiln listening on 127.0.0.1 (random port) over a fresh DATA_DIR.
 * `env` is read as `kiln serve` would read the environment.
 */
export async function startServer(env: Env = {}, options: StartOptions = {}): Promise<TestServer> {
  const temp = options.dataDir ? null : tempDataDir();
  const dataDir = options.dataDir ?? (temp as { dir: string }).dir;
  // With REDIS_URL, keys of the server's own (unless the test names a prefix, to share one): removed when it closes.
  const ownPrefix = env.REDIS_URL && !env.REDIS_PREFIX ? newPrefix() : undefined;
  let made: Context;
  try {
    made = await createContext(testConfig(dataDir, ownPrefix ? { ...env, REDIS_PREFIX: ownPrefix } : env), { clock: options.clock });
  } catch (err) {
    // A test of a bad setting ends here: its temp directory goes with it.
    temp?.cleanup();
    throw err;
  }
  const ctx = (await options.prepare?.(made)) ?? made;
  const app = await buildApp(ctx);
  const answered = recordAnswers(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  if (options.startJobs) await ctx.jobs.start();
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    ctx,
    dataDir,
    async close() {
      const unlisted = unlistedAnswers(app, answered);
      await app.close();
      await ctx.close();
      temp?.cleanup();
      // From the real Redis: REDIS_URL may be a relay a test froze, or a closed port (then nothing was written).
      if (ownPrefix && process.env.TEST_REDIS_URL) await dropRedisPrefix(process.env.TEST_REDIS_URL, ownPrefix);
      if (unlisted.length > 0) throw new Error(`/openapi.json does not list what the server answered:\n${unlisted.join('\n')}`);
    },
  };
}

/** `METHOD /route/:param STATUS` of every answer a Fastify route gave (the front door's cached reads are not routes). */
function recordAnswers(app: App): Set<string> {
  const answered = new Set<string>();
  app.addHook('onResponse', async (request, reply) => {
    const url = request.routeOptions.url;
    if (url !== undefined) answered.add(`${request.method === 'HEAD' ? 'GET' : request.method} ${url} ${reply.statusCode}`);
  });
  return answered;
}

/**
 * The answers of documented routes that their operation in the OpenAPI
 * document does not list: every test that starts a server checks, over what
 * it made the server answer, that the document tells a client the truth.
 * Routes left out of the document on purpose (Swagger UI's own, CORS
 * preflights) are not looked at.
 */
function unlistedAnswers(app: App, answered: Set<string>): string[] {
  const doc = app.swagger() as { paths: Record<string, Record<string, { responses?: Record<string, unknown> } | undefined> | undefined> };
  const unlisted: string[] = [];
  for (const entry of answered) {
    const [method, url, status] = entry.split(' ') as [string, string, string];
    const path = url.replace(/:([A-Za-z_]+)/g, '{$1}');
    // A prefixed root route ('/api/v1') is documented with its trailing slash.
    const operation = (doc.paths[path] ?? doc.paths[`${path}/`])?.[method.toLowerCase()];
    if (operation && !operation.responses?.[status]) unlisted.push(entry);
  }
  return unlisted;
}
