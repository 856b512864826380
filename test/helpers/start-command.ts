/**
 * How `npm start` runs the server, read from package.json's `start` script:
 * the environment it sets (glibc's allocator settings, docs/operations.md)
 * and node's flags. Tests and benchmarks start Kiln with these, so that what
 * they measure is what a user runs, and package.json stays the one place
 * where the settings are written.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface StartCommand {
  /** `NAME=value` assignments before `node`. */
  env: Record<string, string>;
  /** node's own flags, between `node` and the script. */
  nodeArgs: string[];
  /** The script and its arguments. */
  args: string[];
}

const ROOT = path.join(import.meta.dirname, '..', '..');

/** Parses one `NAME=value ... [exec] node --flag ... script args` npm script. */
export function parseStartScript(script: string): StartCommand {
  const words = script.trim().split(/\s+/);
  const env: Record<string, string> = {};
  let i = 0;
  for (; i < words.length; i++) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(words[i] as string);
    if (!m) break;
    env[m[1] as string] = m[2] as string;
  }
  // `exec`: the shell npm runs the script in becomes node, so a signal sent to npm's child reaches the server.
  if (words[i] === 'exec') i++;
  if (words[i] !== 'node') throw new Error(`expected "node" after the environment in: ${script}`);
  const rest = words.slice(i + 1);
  const firstArg = rest.findIndex((w) => !w.startsWith('-'));
  return { env, nodeArgs: rest.slice(0, firstArg), args: rest.slice(firstArg) };
}

/** The `npm run <name>` script of package.json (default `start`), parsed. */
export function startCommand(name = 'start'): StartCommand {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const script = pkg.scripts[name];
  if (!script) throw new Error(`package.json has no "${name}" script`);
  return parseStartScript(script);
}
