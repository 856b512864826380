import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import type { Env } from '../../src/config.js';
import { startCommand } from './start-command.js';

export const MAIN = path.join(import.meta.dirname, '..', '..', 'dist', 'src', 'main.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface KilnProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs the built `kiln <command>` as a child process; for `serve`, waits until /health answers. */
export async function startKiln(env: Env, command = 'serve'): Promise<KilnProcess> {
  const port = await freePort();
  // As `npm start` runs it: its allocator settings and node flags (package.json).
  const start = startCommand();
  const child = spawn(process.execPath, [...start.nodeArgs, MAIN, command], {
    env: { ...process.env, ...start.env, LOG_LEVEL: 'warn', RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0', ...env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (command === 'serve') {
    try {
      await untilHealthy(url, child, () => out);
    } catch (err) {
      // A start that took too long would come up later with nobody to stop it, on a database and a
      // DATA_DIR its test has removed: it ends here.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      throw err;
    }
  }
  return {
    url,
    child,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Resolves once `/health` answers 200; throws when the process exits first or 45 s go by (a loaded machine starts slowly). */
async function untilHealthy(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 45_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kiln exited early: ${output()}`);
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`kiln did not start: ${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
