/**
 * Instructions per request, counted by valgrind's callgrind on the server's
 * main thread (the JavaScript thread): repeatable where req/s is not, since
 * it does not depend on what else the machine is doing. Kernel work (the
 * socket write itself) is not counted, so this measures what Kiln can change.
 *
 *   - bare Node: a plain http.createServer handler answering a fixed 304,
 *     the floor for anything served by Node's HTTP module;
 *   - Kiln, hot path: a public thumb's 304 revalidation and its 200, read
 *     and answered by the server's front door (platform/http/front-door.ts);
 *   - Kiln, Fastify: the same 304 with a Range header, which the hot path
 *     declines, so the front door hands the connection to Node's HTTP
 *     server and the route answers it.
 *
 * Each server runs under valgrind (about 50× slower); every case is warmed
 * with WARM requests, then the counters are zeroed and COUNT requests are
 * counted, 16 keep-alive connections from autocannon in this process.
 * Skipped when valgrind is not installed (Debian package `valgrind`).
 *
 *   npm run build && npm run bench -- instructions
 *   BENCH_COUNT=5000 BENCH_WARM=5000 override the request counts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, MAIN } from '../test/helpers/process.js';
import { startCommand } from '../test/helpers/start-command.js';
import { fixture, postMultipart } from '../test/helpers/upload.js';
import { ensureBuilt } from './lib/kiln-server.js';
import { runAutocannon } from './lib/load.js';
import { fmt, table } from './lib/measure.js';
import { machineLine } from './lib/report.js';

/** The allocator settings and node flags `npm start` runs the server with. */
const START = startCommand();

const COUNT = Number(process.env.BENCH_COUNT ?? 5000);
const WARM = Number(process.env.BENCH_WARM ?? 5000);
const CONNECTIONS = 16;
const VALGRIND = ['/usr/bin/valgrind', '/usr/local/bin/valgrind'].find((p) => existsSync(p)) ?? null;
const API_KEY = 'bench-instructions-key-0123456789abcdef';

/** A fixed 304, as cheap as Node's HTTP module allows. */
const BARE_SERVER = `require('node:http').createServer((req, res) => { res.writeHead(304, ['etag', '"x"', 'cache-control', 'public, max-age=31536000, immutable']); res.end(); }).listen(Number(process.env.PORT), '127.0.0.1');`;

interface Counted {
  pid: number;
  url: string;
  /** Main-thread instructions per request of COUNT GETs of `path` with `headers`, after WARM uncounted. */
  count(path: string, headers: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

/** `n` GETs over 16 keep-alive connections; the responses per status. */
async function send(url: string, n: number, headers: Record<string, string>): Promise<Record<string, number>> {
  return (await runAutocannon({ url, connections: CONNECTIONS, seconds: 0, requests: n, headers })).statuses;
}

/** The main thread's files of the dumps callgrind made of `pid` (`cg.<pid>.<dump>-01`), newest first. */
function dumpsOf(dir: string, pid: number): RegExpExecArray[] {
  return readdirSync(dir)
    .map((f) => new RegExp(`^cg\\.${pid}\\.(\\d+)-01$`).exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(b[1]) - Number(a[1]));
}

/** The main thread's total of the newest dump of `pid`. */
function newestMainThreadTotal(dir: string, pid: number): number {
  const newest = dumpsOf(dir, pid)[0];
  if (!newest) throw new Error(`no callgrind dump for ${pid} in ${dir}`);
  const text = readFileSync(path.join(dir, newest[0]), 'utf8');
  const total = /^(?:summary|totals): (\d+)/m.exec(text);
  if (!total) throw new Error(`no total in ${newest[0]}`);
  return Number(total[1]);
}

/**
 * Runs `callgrind_control -z|-d pid`. Valgrind reads the command only while
 * the process runs, not while it waits in epoll, so one request every 100 ms
 * wakes it until the command is done (a handful among thousands counted).
 */
async function callgrindControl(flag: '-z' | '-d', pid: number, wakeUrl: string): Promise<void> {
  // vgdb names its pipe after $HOST, which the servers are given (127.0.0.1): it must match theirs.
  const control = spawn('callgrind_control', [flag, String(pid)], { env: { ...process.env, HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  control.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  control.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number | null>((resolve) => control.once('exit', resolve));
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    await fetch(wakeUrl).then((r) => r.arrayBuffer()).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
  if ((await done) !== 0 || !out.includes('OK') || out.includes('error')) throw new Error(`callgrind_control ${flag} ${pid}: ${out}`);
}

/** Starts `args` under callgrind on a free port and waits until `ready` answers. */
async function underCallgrind(args: string[], env: Record<string, string>, ready: string): Promise<Counted> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-callgrind-'));
  const port = await freePort();
  const child: ChildProcess = spawn(
    VALGRIND as string,
    ['--tool=callgrind', '--separate-threads=yes', '--smc-check=all-non-file', `--callgrind-out-file=${path.join(dir, 'cg.%p')}`, process.execPath, ...START.nodeArgs, ...args],
    { env: { ...process.env, ...START.env, ...env, HOST: '127.0.0.1', PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`server exited under valgrind: ${err}`);
    }
    try {
      const res = await fetch(`${url}${ready}`);
      await res.arrayBuffer();
      break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error('server did not start under valgrind');
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  const pid = child.pid as number;
  return {
    pid,
    url,
    stop,
    async count(p, headers) {
      await send(`${url}${p}`, WARM, headers);
      await callgrindControl('-z', pid, `${url}${p}`);
      const statuses = await send(`${url}${p}`, COUNT, headers);
      const before = dumpsOf(dir, pid).length;
      await callgrindControl('-d', pid, `${url}${p}`);
      for (let waited = 0; dumpsOf(dir, pid).length === before; waited += 200) {
        if (waited > 60_000) throw new Error(`callgrind wrote no dump for ${pid}`);
        await fetch(`${url}${p}`).then((r) => r.arrayBuffer()).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 200));
      }
      const wrong = Object.keys(statuses).filter((s) => !['200', '304'].includes(s));
      if (wrong.length > 0) throw new Error(`unexpected statuses for ${p}: ${JSON.stringify(statuses)}`);
      return newestMainThreadTotal(dir, pid) / COUNT;
    },
  };
}

async function main(): Promise<void> {
  if (!VALGRIND) {
    console.log('valgrind is not installed: the instruction counts are skipped (Debian package `valgrind`).');
    return;
  }
  ensureBuilt();
  console.log(`# Instructions per request on the server's main thread (callgrind), ${COUNT} requests after ${WARM} uncounted, ${CONNECTIONS} connections`);
  console.log(machineLine());

  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-data-'));
  const kilnEnv = { DATA_DIR: dataDir, API_KEY, LOG_LEVEL: 'warn', RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0' };
  const [bare, kiln] = await Promise.all([underCallgrind(['-e', BARE_SERVER], {}, '/'), underCallgrind([MAIN, 'serve'], kilnEnv, '/health')]);
  const rows: Array<[string, string, number]> = [];
  try {
    const upload = await postMultipart(`${kiln.url}/projects/bench/images`, [{ field: 'file', filename: 'rocket.jpg', data: fixture('rocket_small_640x427.jpg'), type: 'image/jpeg' }], { 'x-api-key': API_KEY });
    if (upload.status !== 201) throw new Error(`upload failed: ${upload.status} ${await upload.text()}`);
    const thumb = ((await upload.json()) as { urls: { thumb: string } }).urls.thumb;
    const first = await fetch(`${kiln.url}${thumb}`);
    await first.arrayBuffer();
    const etag = first.headers.get('etag') as string;

    const [bare304, hot304] = await Promise.all([bare.count('/', {}), kiln.count(thumb, { 'if-none-match': etag })]);
    rows.push(['bare Node', 'fixed 304', bare304], ['Kiln, hot path', 'thumb 304', hot304]);
    rows.push(['Kiln, hot path', 'thumb 200', await kiln.count(thumb, {})]);
    rows.push(['Kiln, Fastify route', 'thumb 304 (Range: declined by the hot path)', await kiln.count(thumb, { 'if-none-match': etag, range: 'bytes=0-9' })]);
  } finally {
    await Promise.all([bare.stop(), kiln.stop()]);
    rmSync(dataDir, { recursive: true, force: true });
  }
  const floor = rows[0]?.[2] ?? NaN;
  console.log();
  console.log(table(['server', 'request', 'instructions / request', '× bare Node'], rows.map(([server, request, n]) => [server, request, fmt(n, 0), fmt(n / floor, 2)])));
}

await main();
