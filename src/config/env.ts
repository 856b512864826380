/**
 * The environment as config.ts reads it: the `.env` file under the process's
 * own variables, and a Reader that turns one variable into a typed value or
 * a ConfigError naming it. It knows no setting of Kiln's; config.ts says
 * which variables there are, and checks.ts the rules of a few of them.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Why a file or directory a setting names failed, for a ConfigError: the error's code (EACCES), else its message. */
export function failureOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? (err instanceof Error ? err.message : String(err));
}

export type Env = Record<string, string | undefined>;

/** Reads `.env` from `dir` without overriding variables that are already set. */
export function readDotenv(dir: string): Env {
  const file = path.join(dir, '.env');
  if (!existsSync(file)) return {};
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch (err) {
    throw new ConfigError('.env', `cannot read ${file} (${failureOf(err)})`);
  }
  refuseCutValues(text.toString('utf8'));
  return parseDotenv(text);
}

/** `NAME=value` (dotenv's own line shape, `export` and `:` included): the name, and all after the `=` or `:`. */
const ASSIGNMENT = /^\s*(?:export\s+)?([\w.-]+)(?:\s*=|:(?=\s))(.*)$/;

/**
 * dotenv ends an unquoted value at its first `#`, the rest being a comment:
 * `ADMIN_PASSWORD=correct#horse` sets `correct`, a shorter password than
 * the one written, and nothing says so. A `#` right after the value (no
 * space before it, so not a comment put after it) stops the start instead,
 * naming the variable; quoting the value keeps the `#`.
 */
function refuseCutValues(text: string): void {
  for (const line of text.split(/\r?\n/)) {
    const m = ASSIGNMENT.exec(line);
    if (!m) continue;
    const rest = m[2] as string;
    const value = rest.trimStart();
    // A quoted value keeps its '#'; so does an empty one followed by a comment (`NAME= # none`).
    if (/^['"`]/.test(value)) continue;
    const hash = rest.indexOf('#');
    // Right after the '=' (`NAME=#x`, read as empty), or right after a character of the value.
    if (hash === 0 || (hash > 0 && !/\s/.test(rest.charAt(hash - 1)))) {
      throw new ConfigError(m[1] as string, 'its value in .env has a "#" that dotenv reads as the start of a comment, cutting the value there; put the value in quotes to keep the "#"');
    }
  }
}

export class Reader {
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  int(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v)) throw new ConfigError(name, `expected a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw new ConfigError(name, `expected true or false, got "${v}"`);
  }

  list(name: string): string[] {
    const v = this.raw(name);
    if (v === undefined) return [];
    return v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }

  url(name: string, protocols: string[]): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new ConfigError(name, 'is not a valid URL');
    }
    if (!protocols.includes(u.protocol)) {
      throw new ConfigError(name, `must start with ${protocols.map((p) => p + '//').join(' or ')}`);
    }
    return v;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${v}"`);
    }
    return v as T;
  }
}
