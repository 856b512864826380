import { existsSync, readFileSync } from 'node:fs';

// src/version.ts under tsx, dist/src/version.js when built: the package file is one or two levels up.
const candidates = ['../package.json', '../../package.json'].map((p) => new URL(p, import.meta.url));
const file = candidates.find((u) => existsSync(u)) ?? (candidates[0] as URL);
const pkg = JSON.parse(readFileSync(file, 'utf8')) as { version: string };

/** The package version, read from package.json. */
export const VERSION: string = pkg.version;
