/**
 * `npm start`'s settings are written once, in package.json; the worker
 * script and the Dockerfile must carry the same ones, and the tests and
 * benchmarks read them from there (test/helpers/start-command.ts).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDataDir } from './helpers/config.js';
import { freePort } from './helpers/process.js';
import { parseStartScript, startCommand } from './helpers/start-command.js';

const ROOT = path.join(import.meta.dirname, '..');
/** glibc's dynamic loader on x86-64 Linux; since glibc 2.33 it lists the tunables it was given. */
const LOADER = '/lib64/ld-linux-x86-64.so.2';
/** The glibc release that brought each tunable newer than 2.26 (glibc's NEWS). */
const TUNABLE_SINCE: Record<string, string> = { 'glibc.malloc.hugetlb': '2.35' };

function canListTunables(): boolean {
  return existsSync(LOADER) && spawnSync(LOADER, ['--list-tunables'], { stdio: 'ignore' }).status === 0;
}

/** `version` is later than the glibc this process runs on. */
function newerThanRuntime(version: string | undefined): boolean {
  const runtime = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
  if (!version || !runtime) return false;
  const [a, b] = [version, runtime].map((v) => v.split('.').map(Number)) as [number[], number[]];
  return (a[0] ?? 0) > (b[0] ?? 0) || ((a[0] ?? 0) === (b[0] ?? 0) && (a[1] ?? 0) > (b[1] ?? 0));
}

describe('the start command', () => {
  it('execs node, so that `npm start` stopped with SIGTERM stops the server gracefully, not leaving it orphaned', async () => {
    const script = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    for (const name of ['start', 'worker']) expect(script[name]).toMatch(/^(\S+=\S+ )*exec node /);
    const data = tempDataDir();
    const port = await freePort();
    const npm = spawn('npm', ['start'], { cwd: ROOT, env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: data.dir, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    try {
      await expect.poll(() => out.includes('kiln is serving'), { timeout: 20_000 }).toBe(true);
      npm.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).toContain('"signal":"SIGTERM"');
      // Nothing listens any more: the server went with npm.
      await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    } finally {
      npm.kill('SIGKILL');
      data.cleanup();
    }
  });

  it('parses the environment, node flags and script of an npm script', () => {
    expect(parseStartScript('A=1 B_2=x:y=z node --flag=4 --other dist/main.js serve')).toEqual({
      env: { A: '1', B_2: 'x:y=z' },
      nodeArgs: ['--flag=4', '--other'],
      args: ['dist/main.js', 'serve'],
    });
    expect(() => parseStartScript('A=1 tsx main.ts')).toThrow(/expected "node"/);
  });

  it("sets glibc's allocator: one arena, a fixed mmap threshold of 2 MB, huge pages for large blocks", () => {
    const { env, nodeArgs, args } = startCommand();
    expect(env.GLIBC_TUNABLES?.split(':').sort()).toEqual(['glibc.malloc.arena_max=1', 'glibc.malloc.hugetlb=1', 'glibc.malloc.mmap_threshold=2097152']);
    expect(nodeArgs).toEqual(['--max-semi-space-size=4', '--initial-old-space-size=96']);
    expect(args).toEqual(['dist/src/main.js', 'serve']);
  });

  it('runs `npm run worker` with the same settings', () => {
    const worker = startCommand('worker');
    const start = startCommand();
    expect(worker.env).toEqual(start.env);
    expect(worker.nodeArgs).toEqual(start.nodeArgs);
    expect(worker.args).toEqual(['dist/src/main.js', 'worker']);
  });

  it('gives the containers the same settings', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
    const { env, nodeArgs } = startCommand();
    const envLine = dockerfile.split('\n').find((l) => l.startsWith('ENV ')) ?? '';
    for (const [name, value] of Object.entries(env)) expect(envLine.split(/\s+/)).toContain(`${name}=${value}`);
    const cmd = JSON.parse(/^CMD (.*)$/m.exec(dockerfile)?.[1] ?? '[]') as string[];
    expect(cmd.slice(0, 1 + nodeArgs.length)).toEqual(['node', ...nodeArgs]);
    // compose.yaml's worker runs the same image with its own command.
    const compose = readFileSync(path.join(ROOT, 'compose.yaml'), 'utf8');
    const worker = JSON.parse(/^\s*command: (\[.*\])$/m.exec(compose)?.[1] ?? '[]') as string[];
    expect(worker).toEqual(['node', ...nodeArgs, 'dist/src/main.js', 'worker']);
  });

  // glibc ignores a tunable it does not know: a misspelt name would silently change nothing.
  it.runIf(canListTunables())('uses tunables this glibc knows, with the values it reads', () => {
    const { env } = startCommand();
    const listed = execFileSync(LOADER, ['--list-tunables'], { env: { ...process.env, GLIBC_TUNABLES: env.GLIBC_TUNABLES } }).toString();
    for (const tunable of env.GLIBC_TUNABLES?.split(':') ?? []) {
      const [name, value] = tunable.split('=') as [string, string];
      // An older glibc than the tunable's own ignores it, harmlessly: the setting is only missed there.
      if (newerThanRuntime(TUNABLE_SINCE[name])) continue;
      expect(listed).toMatch(new RegExp(`^${name.replaceAll('.', '\\.')}: 0x${Number(value).toString(16)} `, 'm'));
    }
  });
});
