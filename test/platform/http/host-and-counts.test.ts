/**
 * A request's Host must be one host (RFC 9112 3.2: a 400 for none in
 * HTTP/1.1, for two, or for one that is not a host), through Node and
 * through the front door alike; and every error answer, including those no
 * route gives (404, 405, a request that never parsed), is counted in
 * kiln_http_errors_total.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverWithCachedThumb } from '../../helpers/cached-image.js';
import { RawConnection } from '../../helpers/raw-http.js';
import type { TestServer } from '../../helpers/server.js';

let server: TestServer;
let thumb: string;
beforeAll(async () => {
  // The front door may answer the thumb's reads itself: the Host rules hold there too.
  ({ server, thumb } = await serverWithCachedThumb('hosts'));
});
afterAll(async () => server.close());

async function ask(path: string, hostLines: string[]): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const conn = await RawConnection.open(server.url);
  try {
    conn.send(`GET ${path} HTTP/1.1\r\n${hostLines.map((h) => `Host: ${h}\r\n`).join('')}\r\n`);
    const [answer] = await conn.answers(1);
    if (!answer) throw new Error('no answer');
    return { status: answer.status, headers: answer.headers, body: answer.body.toString() };
  } finally {
    conn.destroy();
  }
}

async function errorCount(route: string, code: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`kiln_http_errors_total{route="${route}",code="${code}"} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

describe('Host', () => {
  it('is taken when it is one host name or address, with or without a port, or empty', async () => {
    for (const host of ['kiln.test', 'kiln.test:8000', '127.0.0.1', '[::1]:8000', '']) {
      for (const path of ['/health', thumb]) expect((await ask(path, [host])).status, `${path} ${host}`).toBe(200);
    }
  });

  it('is a 400 (problem+json, with a Date) when given twice or when it is not a host, on a route and on a read the front door would answer', async () => {
    const before = await errorCount('unmatched', 'malformed_request');
    const bad = [['kiln.test', 'other.test'], ['a b'], ['<script>'], ['kiln.test/path'], ['user@kiln.test']];
    for (const path of ['/health', thumb]) {
      for (const hosts of bad) {
        const answer = await ask(path, hosts);
        expect(answer.status, `${path} ${hosts.join(' + ')}`).toBe(400);
        expect(answer.headers['content-type']).toBe('application/problem+json');
        expect(JSON.parse(answer.body)).toMatchObject({ code: 'malformed_request' });
        expect(answer.headers.date).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      }
    }
    expect(await errorCount('unmatched', 'malformed_request')).toBe(before + 2 * bad.length);
  });
});

describe('kiln_http_errors_total', () => {
  it('counts the answers no route gives: 404 not_found and 405 method_not_allowed', async () => {
    const [notFound, notAllowed] = [await errorCount('unmatched', 'not_found'), await errorCount('unmatched', 'method_not_allowed')];
    expect((await fetch(`${server.url}/no/such/path`)).status).toBe(404);
    expect((await fetch(`${server.url}/users/me`, { method: 'PATCH' })).status).toBe(405);
    expect(await errorCount('unmatched', 'not_found')).toBe(notFound + 1);
    expect(await errorCount('unmatched', 'method_not_allowed')).toBe(notAllowed + 1);
  });
});

describe('targets that name no path', () => {
  async function raw(request: string): Promise<string> {
    const conn = await RawConnection.open(server.url);
    let text = '';
    conn.socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    const closed = new Promise<void>((resolve) => conn.socket.once('close', () => resolve()));
    conn.send(request);
    await Promise.race([closed, new Promise((r) => setTimeout(r, 1500))]);
    conn.destroy();
    return text;
  }

  it('OPTIONS * is 204 with the methods the server takes; any other method with * is 400, not the home page', async () => {
    const options = await raw('OPTIONS * HTTP/1.1\r\nHost: kiln.test\r\n\r\n');
    expect(options).toMatch(/^HTTP\/1\.1 204 /);
    expect(options).toMatch(/\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/);
    const get = await raw('GET * HTTP/1.1\r\nHost: kiln.test\r\n\r\n');
    expect(get).toMatch(/^HTTP\/1\.1 400 /);
    expect(get).toContain('"code":"malformed_request"');
  });

  it('CONNECT is 405 as problem+json, counted, and the connection closed (this server is no proxy)', async () => {
    const before = await errorCount('unmatched', 'method_not_allowed');
    const answer = await raw('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 405 /);
    expect(answer).toContain('Content-Type: application/problem+json');
    expect(answer).toContain('"code":"method_not_allowed"');
    expect(await errorCount('unmatched', 'method_not_allowed')).toBe(before + 1);
  });
});
