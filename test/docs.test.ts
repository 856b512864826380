/**
 * The README's configuration table against the code: every variable Kiln
 * reads is in the table, and every variable in the table is read. The names
 * come from the config reader's calls (`r.int('PORT', …)`) in src/config*
 * and from `process.env.X` anywhere in src/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.join(import.meta.dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

function namesIn(text: string, pattern: RegExp): Set<string> {
  return new Set([...text.matchAll(pattern)].map((m) => m[1] as string));
}

/** The variables of the README's table under "## Configuration": the backticked names of each row's first cell. */
function documented(): Set<string> {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
  const firstCells = section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split('|')[1] as string);
  return namesIn(firstCells.join(' '), /`([A-Z][A-Z0-9_]+)`/g);
}

function read(): Set<string> {
  const names = new Set<string>();
  for (const file of sourceFiles(path.join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const configReader = /src[\\/]config(\.ts|[\\/])/.test(file) ? namesIn(text, /\br\.\w+\('([A-Z][A-Z0-9_]+)'/g) : new Set<string>();
    for (const name of [...configReader, ...namesIn(text, /process\.env\.([A-Z][A-Z0-9_]+)/g)]) names.add(name);
  }
  return names;
}

describe('README configuration table', () => {
  it('lists every variable Kiln reads, and only those', () => {
    const inTable = documented();
    const inCode = read();
    expect(inTable.size).toBeGreaterThan(40);
    expect(inCode).toContain('PORT');
    expect([...inCode].filter((name) => !inTable.has(name)).sort(), 'read but not in the table').toEqual([]);
    expect([...inTable].filter((name) => !inCode.has(name)).sort(), 'in the table but never read').toEqual([]);
  });
});
