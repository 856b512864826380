/**
 * nginx as a reference static file server for the serving bench: a minimal
 * nginx.conf in a temp directory (pid, logs and temp paths all inside it),
 * listening on 127.0.0.1:<free port>, serving `root` with ETag on, access log
 * off, sendfile on. Started in the foreground (`daemon off`) so we own its
 * PID; stopped with SIGQUIT (graceful), then SIGTERM if it lingers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../test/helpers/process.js';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p)) ?? null;
export const hasNginx = NGINX !== null;

export interface Nginx {
  url: string;
  stop(): Promise<void>;
}

function config(dir: string, root: string, port: number, workers: number | 'auto'): string {
  const tmp = (name: string): string => `${name} ${path.join(dir, 'tmp', name.replace('_temp_path', ''))};`;
  // As root, nginx's workers would drop to `nobody`, who cannot read our 0700 temp dirs.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `daemon off;
${user}worker_processes ${workers};
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  ${tmp('client_body_temp_path')}
  ${tmp('proxy_temp_path')}
  ${tmp('fastcgi_temp_path')}
  ${tmp('uwsgi_temp_path')}
  ${tmp('scgi_temp_path')}
  default_type image/jpeg;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    etag on;
  }
}
`;
}

/** Starts nginx serving `root`; resolves once it accepts a request. */
export async function startNginx(root: string, workers: number | 'auto'): Promise<Nginx> {
  if (!NGINX) throw new Error('nginx is not installed');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-nginx-'));
  mkdirSync(path.join(dir, 'tmp'));
  mkdirSync(path.join(dir, 'logs')); // nginx -p expects it for its compiled-in default log before reading the config
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, config(dir, root, port, workers));
  const child: ChildProcess = spawn(NGINX, ['-c', conf, '-p', dir, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGTERM'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx exited early: ${err}`);
    }
    try {
      await fetch(url, { method: 'HEAD' });
      return { url, stop };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
