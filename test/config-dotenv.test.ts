/**
 * A value in `.env` that dotenv would cut at a `#` (the rest read as a
 * comment) stops the start, naming the variable, instead of silently setting
 * a shorter password or secret than the one written.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';

function withDotenv<T>(text: string, fn: (dir: string) => T): T {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-dotenv-'));
  try {
    writeFileSync(path.join(dir, '.env'), text);
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('a "#" in a value of .env', () => {
  it('stops the start, naming the variable, when it would cut an unquoted value', () => {
    const lines = ['ADMIN_PASSWORD=correcthorse#battery', 'export ADMIN_PASSWORD=correcthorse#battery', 'ADMIN_PASSWORD = correcthorse#battery', 'ADMIN_PASSWORD=#correcthorsebattery'];
    // Saved on Windows too: CRLF line ends.
    for (const [line, end] of lines.flatMap((l) => [[l, '\n'], [l, '\r\n']] as const)) {
      withDotenv(`ADMIN_EMAIL=admin@example.com${end}${line}${end}`, (dir) => {
        expect(() => loadConfig({}, dir), line).toThrow(/^ADMIN_PASSWORD: its value in \.env has a "#" that dotenv reads as the start of a comment, cutting the value there; put the value in quotes/);
      });
    }
  });

  it('is kept in quotes; a comment after a value, or on a line of its own, is still a comment', () => {
    const text = ['# the admin', 'ADMIN_EMAIL=admin@example.com # who signs in first', 'ADMIN_PASSWORD="correcthorse#battery"', "JWT_SECRET='0123456789abcdef0123456789abcdef#1'", 'PORT=9002 #the port', 'API_KEY= # none', ''].join('\r\n');
    const config = withDotenv(text, (dir) => loadConfig({}, dir));
    expect(config.adminPassword).toBe('correcthorse#battery');
    expect(config.adminEmail).toBe('admin@example.com');
    expect(config.port).toBe(9002);
    expect(config.jwtSecret).toBe('0123456789abcdef0123456789abcdef#1');
  });
});
