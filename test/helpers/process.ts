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
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`kiln exited early: ${out}`);
      try {
        if ((await fetch(`${url}/health`)).ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`kiln did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
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
