import type { AddressInfo } from 'node:net';
import { buildApp, type App } from '../../src/app.js';
import type { Env } from '../../src/config.js';
import { createContext, type Context } from '../../src/context.js';
import type { Clock } from '../../src/clock.js';
import { tempDataDir, testConfig } from './config.js';

export interface TestServer {
  url: string;
  app: App;
  ctx: Context;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * A real Kiln listening on 127.0.0.1 (random port) over a fresh DATA_DIR.
 * `env` is read as `kiln serve` would read the environment.
 */
export async function startServer(env: Env = {}, options: { clock?: Clock; dataDir?: string } = {}): Promise<TestServer> {
  const temp = options.dataDir ? null : tempDataDir();
  const dataDir = options.dataDir ?? (temp as { dir: string }).dir;
  const ctx = await createContext(testConfig(dataDir, env), { clock: options.clock });
  const app = await buildApp(ctx);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    ctx,
    dataDir,
    async close() {
      await app.close();
      await ctx.close();
      temp?.cleanup();
    },
  };
}
