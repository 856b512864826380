/**
 * `npm run bench`: runs every benchmark in bench/ one after another, each in
 * its own process so one bench's memory and threads cannot colour the next.
 * A bench is any `bench/*.bench.ts` file, plus the ones listed in BENCHES;
 * to add one, name it `something.bench.ts` (or add it to the list).
 * Benches print figures; this fails only when a bench crashes, never on time.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const BENCH_DIR = import.meta.dirname;
const BENCHES = ['variants.ts'];

const found = readdirSync(BENCH_DIR).filter((f) => f.endsWith('.bench.ts'));
const all = [...new Set([...BENCHES, ...found.sort()])];
const only = process.argv.slice(2);
const selected = only.length > 0 ? all.filter((f) => only.some((o) => f.startsWith(o))) : all;

let crashed = 0;
for (const file of selected) {
  console.log(`\n=== bench/${file} ===\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, file)], { stdio: 'inherit' });
  if (r.status !== 0) {
    crashed++;
    console.log(`bench/${file} exited with ${r.status ?? r.signal}`);
  }
}
process.exitCode = crashed > 0 ? 1 : 0;
