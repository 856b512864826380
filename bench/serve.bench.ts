/**
 * Serving gallery images: after one upload of the 4 MP corpus photo, GET of
 * its `thumb` (200 with the body) and a 304 revalidation (If-None-Match with
 * its ETag), 16 connections for 10 s each with autocannon, beside nginx
 * serving the same thumb file from disk in the same run (1 worker, fair to
 * Kiln's one process; and `worker_processes auto` for reference). wrk, when
 * installed, repeats Kiln and nginx (1 worker) as a cross-check that the Node
 * client is not the limit, in turns (Kiln, nginx, Kiln, nginx, …; 3 rounds)
 * so that a slow spell of a shared machine falls on both, and prints each
 * round's share and their median. Kiln is the built server in a child
 * process (SQLite, fs blobs, temp DATA_DIR); the load generators run outside
 * it. Target: Kiln >= 40% of nginx's requests/s. Figures, never pass/fail.
 *
 *   npm run build && node --import tsx bench/run.ts serve     (or `npm run bench -- serve`)
 *   BENCH_SECONDS=10 BENCH_CONNECTIONS=16 BENCH_ROUNDS=3 override the load per run and the wrk rounds.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { postMultipart } from '../test/helpers/upload.js';
import { corpusFiles } from './lib/corpus.js';
import { startBenchServer, type BenchServer } from './lib/kiln-server.js';
import { fmt, percentile, table } from './lib/measure.js';
import { hasNginx, startNginx } from './lib/nginx.js';
import { hasWrk, runAutocannon, runWrk, type LoadOptions, type LoadResult } from './lib/load.js';
import { machineLine, verdict } from './lib/report.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const TARGET_SHARE = 0.4;
/** wrk turns of Kiln then nginx (BENCH_ROUNDS). */
const WRK_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Row {
  server: string;
  request: '200' | '304';
  result: LoadResult;
  /** wrk runs take turns between Kiln and nginx: which turn. */
  round?: number;
}

async function etagOf(url: string): Promise<string> {
  const res = await fetch(url);
  await res.arrayBuffer();
  const etag = res.headers.get('etag');
  if (res.status !== 200 || !etag) throw new Error(`GET ${url}: ${res.status}, etag ${etag}`);
  return etag;
}

/** GET 200 then GET 304 against one URL with one tool. */
async function pair(server: string, url: string, run: (o: LoadOptions) => Promise<LoadResult>): Promise<Row[]> {
  const etag = await etagOf(url);
  const ok = await run({ url, connections: CONNECTIONS, seconds: SECONDS });
  const revalidated = await run({ url, connections: CONNECTIONS, seconds: SECONDS, headers: { 'if-none-match': etag } });
  return [
    { server, request: '200', result: ok },
    { server, request: '304', result: revalidated },
  ];
}

async function uploadThumb(kiln: BenchServer, photo: string): Promise<{ kilnUrl: string; blobPath: string }> {
  const res = await postMultipart(`${kiln.url}/projects/bench/images`, [{ field: 'file', filename: path.basename(photo), data: readFileSync(photo), type: 'image/jpeg' }], kiln.user.headers);
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
  const image = (await res.json()) as { image_id: string; urls: { thumb: string } };
  return { kilnUrl: `${kiln.url}${image.urls.thumb}`, blobPath: `/gallery/${image.image_id}/thumb.jpg` };
}

const statusText = (r: LoadResult): string =>
  Object.entries(r.statuses)
    .map(([code, n]) => `${code}:${n}`)
    .join(' ') + (r.errors > 0 ? ` errors:${r.errors}` : '');

async function main(): Promise<void> {
  const files = corpusFiles(['path_2560x1600_olympus_exif.jpg'], 'serve.bench');
  if (!files) return;
  console.log(`# Serving: GET ?size=thumb (200) and If-None-Match revalidation (304), ${CONNECTIONS} connections, ${SECONDS} s per run`);
  console.log(machineLine());

  const rows: Row[] = [];
  const kiln = await startBenchServer();
  try {
    const { kilnUrl, blobPath } = await uploadThumb(kiln, files[0] as string);
    const thumbBytes = (await (await fetch(kilnUrl)).arrayBuffer()).byteLength;
    console.log(`thumb: ${thumbBytes} bytes; Kiln pid ${kiln.pid} (1 process); load generators in the bench process / as child processes`);
    rows.push(...(await pair('Kiln', kilnUrl, runAutocannon)));

    const blobRoot = path.join(kiln.dataDir, 'blobs');
    if (!hasNginx) {
      console.log('nginx is not installed: the comparison with nginx is skipped.');
    } else {
      for (const workers of [1, 'auto'] as const) {
        const nginx = await startNginx(blobRoot, workers);
        try {
          rows.push(...(await pair(`nginx (${workers === 1 ? '1 worker' : 'workers auto'})`, `${nginx.url}${blobPath}`, runAutocannon)));
        } finally {
          await nginx.stop();
        }
      }
    }

    if (!hasWrk) {
      console.log('wrk is not installed: the wrk cross-check is skipped.');
    } else {
      // Kiln and nginx take turns, so that a slow spell of the machine falls on both rather than on one.
      const nginx = hasNginx ? await startNginx(blobRoot, 1) : null;
      try {
        for (let round = 1; round <= WRK_ROUNDS; round++) {
          rows.push(...(await pair('Kiln', kilnUrl, runWrk)).map((r) => ({ ...r, round })));
          if (nginx) rows.push(...(await pair('nginx (1 worker)', `${nginx.url}${blobPath}`, runWrk)).map((r) => ({ ...r, round })));
        }
      } finally {
        await nginx?.stop();
      }
    }
  } finally {
    await kiln.close();
  }

  const reference = (r: Row): LoadResult | undefined =>
    rows.find((n) => n.server === 'nginx (1 worker)' && n.result.tool === r.result.tool && n.request === r.request && n.round === r.round)?.result;
  const share = (r: Row): number | null => {
    const ref = reference(r);
    return r.server === 'Kiln' && ref ? r.result.rps / ref.rps : null;
  };
  console.log();
  console.log(
    table(
      ['server', 'GET', 'tool', 'round', 'req/s', 'p50 ms', 'p99 ms', 'responses', 'Kiln / nginx 1 worker', `target >= ${TARGET_SHARE * 100}%`],
      rows.map((r) => {
        const s = share(r);
        return [r.server, r.request, r.result.tool, r.round ?? '', fmt(r.result.rps, 0), fmt(r.result.p50Ms, 1), fmt(r.result.p99Ms, 1), statusText(r.result), s === null ? '' : `${fmt(s * 100, 0)}%`, r.server === 'Kiln' && s !== null ? verdict(s >= TARGET_SHARE) : ''];
      }),
    ),
  );
  for (const request of ['200', '304'] as const) {
    const shares = rows.filter((r) => r.result.tool === 'wrk' && r.request === request).map(share).filter((s): s is number => s !== null);
    if (shares.length === 0) continue;
    const median = percentile(shares, 50);
    console.log(`wrk, GET ${request}: Kiln / nginx (1 worker) over ${shares.length} rounds: ${shares.map((s) => `${fmt(s * 100, 0)}%`).join(', ')}; median ${fmt(median * 100, 0)}%: ${verdict(median >= TARGET_SHARE)}`);
  }
  console.log('\nnginx with 1 worker is the comparison (Kiln is one Node process); "workers auto" is for reference only.');
}

await main();
