/**
 * A product database on 127.0.0.1 speaking Open Food Facts' API, with the
 * faults the ean_fetch job must survive: unknown products, products without
 * a picture, pictures that are not images or are huge, redirects to the
 * cloud metadata address or in a loop, slow answers and 503s before success
 * (from the product API, and from the picture's host).
 * Counts every request by path so tests can prove the provider was asked once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fixture } from '../../helpers/upload.js';

export type Product =
  | { kind: 'ok'; name: string | null; image: string }
  | { kind: 'missing' }
  | { kind: 'no_image'; name: string }
  /** Answers 503 this many times, then like `ok`; each answer after `delayMs` when given, so several jobs are in flight together. */
  | { kind: 'flaky'; failures: number; name: string; image: string; delayMs?: number }
  /** Holds the product answer this long before sending it (past the test's timeout). */
  | { kind: 'slow'; delayMs: number; name: string; image: string }
  /** Answers 404 after this long, so several jobs are in flight together. */
  | { kind: 'slow_missing'; delayMs: number }
  /** Answers this status (with this Retry-After header, when given). */
  | { kind: 'status'; status: number; retryAfter?: string }
  /** Answers exactly this (a maintenance page, a broken answer). */
  | { kind: 'raw'; status: number; type: string; body: string };

export interface FakeProvider {
  url: string;
  /** Product answers keyed by the 13/8/14-digit code Kiln sends. */
  products: Map<string, Product>;
  /** Requests per path (without query). */
  hits: Map<string, number>;
  productHits(code: string): number;
  /** An absolute URL on this server. */
  at(path: string): string;
  close(): Promise<void>;
}

export const JPEG = fixture('rocket_small_640x427.jpg');
const THIRTY_MB = 30 * 1024 * 1024;

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A body of `total` bytes starting like a JPEG, streamed so the server never holds it whole. */
function streamBig(res: http.ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(total) });
  const chunk = Buffer.alloc(64 * 1024, 0);
  JPEG.copy(chunk, 0, 0, 1024);
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('error', () => undefined); // Kiln hangs up at its limit: expected
  pump();
}

export async function startFakeProvider(): Promise<FakeProvider> {
  const products = new Map<string, Product>();
  const hits = new Map<string, number>();
  const failuresLeft = new Map<string, number>();
  const sockets = new Set<import('node:net').Socket>();
  let base = '';

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
    const m = /^\/api\/v2\/product\/([0-9]+)\.json$/.exec(url.pathname);
    if (m) {
      const code = m[1] as string;
      const p = products.get(code) ?? { kind: 'missing' };
      const found = (name: string | null, image: string) =>
        sendJson(res, 200, { code, status: 1, status_verbose: 'product found', product: { product_name: name, image_front_url: image.startsWith('http') ? image : `${base}${image}` } });
      switch (p.kind) {
        case 'ok':
          return found(p.name, p.image);
        case 'missing':
          return sendJson(res, 404, { code, status: 0, status_verbose: 'product not found' });
        case 'no_image':
          return sendJson(res, 200, { code, status: 1, product: { product_name: p.name } });
        case 'status':
          if (p.retryAfter !== undefined) res.setHeader('retry-after', p.retryAfter);
          return sendJson(res, p.status, { status: 0 });
        case 'raw':
          res.writeHead(p.status, { 'content-type': p.type });
          return res.end(p.body);
        case 'flaky': {
          const answer = (): void => {
            const left = failuresLeft.get(code) ?? p.failures;
            if (left > 0) {
              failuresLeft.set(code, left - 1);
              return sendJson(res, 503, { error: 'busy' });
            }
            return found(p.name, p.image);
          };
          if (!p.delayMs) return answer();
          const timer = setTimeout(answer, p.delayMs);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case 'slow_missing': {
          const timer = setTimeout(() => sendJson(res, 404, { code, status: 0 }), p.delayMs);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case 'slow': {
          const timer = setTimeout(() => found(p.name, p.image), p.delayMs);
          res.on('close', () => clearTimeout(timer));
          return;
        }
      }
    }
    switch (url.pathname) {
      case '/img/rocket.jpg':
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        return res.end(JPEG);
      case '/img/page.html':
        // Claims to be a JPEG: only the bytes may decide.
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        return res.end('<!doctype html><html><body>not a picture</body></html>');
      case '/img/huge.jpg':
        return streamBig(res, THIRTY_MB);
      case '/img/to-metadata.jpg':
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' });
        return res.end();
      case '/img/loop.jpg':
        res.writeHead(302, { location: '/img/loop.jpg' });
        return res.end();
      case '/img/redirect-once.jpg':
        res.writeHead(301, { location: '/img/rocket.jpg' });
        return res.end();
      case '/img/gone.jpg':
        res.writeHead(404, { 'content-type': 'text/plain' });
        return res.end('gone');
      default: {
        // /img/flaky/<n>/<any>.jpg: 503 for the first n requests of that path, then the picture.
        const flaky = /^\/img\/flaky\/(\d+)\//.exec(url.pathname);
        if (flaky) {
          if ((hits.get(url.pathname) ?? 0) <= Number(flaky[1])) {
            res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' });
            return res.end('busy');
          }
          res.writeHead(200, { 'content-type': 'image/jpeg' });
          return res.end(JPEG);
        }
        res.writeHead(404, { 'content-type': 'text/plain' });
        return res.end('no such path');
      }
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    products,
    hits,
    productHits: (code) => hits.get(`/api/v2/product/${code}.json`) ?? 0,
    at: (path) => `${base}${path}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
