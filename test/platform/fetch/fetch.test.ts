// safeFetch against real servers on 127.0.0.1, friendly and hostile.
import dns, { type LookupAddress } from 'node:dns';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FetchError, findFetchError, isBlockedAddress, retryAfterMs, safeFetch, type SafeFetchOptions } from '../../../src/platform/fetch/index.js';
import { guardedWebFetch } from '../../../src/platform/fetch/web.js';
import { tempDataDir } from '../../helpers/config.js';
import { lockDirectory } from '../../helpers/files.js';

let server: Server;
let base: string;
let port: number;
let secretHits = 0;
/** One per /stalled-body answer: resolves when the client closes the connection it stalls. */
const stalledHungUp: Array<Promise<void>> = [];
const temp = tempDataDir();

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const p = url.pathname;
  if (p === '/ok') {
    res.setHeader('content-type', 'text/plain');
    res.setHeader('x-seen-auth', req.headers.authorization ?? '');
    res.end('hello');
  } else if (p === '/credentials') {
    // Which credentials reached this server, as the redirect target sees them.
    const seen = ['authorization', 'x-api-key', 'cookie', 'proxy-authorization'].filter((h) => req.headers[h] !== undefined);
    res.end(JSON.stringify(seen));
  } else if (p === '/echo') {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => res.end(JSON.stringify({ method: req.method, body, type: req.headers['content-type'], auth: req.headers.authorization ?? null })));
  } else if (p.startsWith('/hops/')) {
    // /hops/N redirects N times before /ok.
    const n = Number(p.slice('/hops/'.length));
    res.writeHead(302, { location: n > 1 ? `/hops/${n - 1}` : '/ok' }).end();
  } else if (p === '/loop') {
    res.writeHead(301, { location: '/loop' }).end();
  } else if (p === '/to') {
    res.writeHead(Number(url.searchParams.get('status') ?? 302), { location: url.searchParams.get('url') ?? '/' }).end();
  } else if (p === '/slow-head') {
    setTimeout(() => res.end('late'), 2000);
  } else if (p === '/slow-body') {
    res.write('a');
    setTimeout(() => res.end('b'), 2000);
  } else if (p === '/stalled-body') {
    // Status and headers at once, then a chunked body whose first byte never comes: only the client can end it.
    res.writeHead(Number(url.searchParams.get('status') ?? 200), { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    stalledHungUp.push(new Promise((resolve) => res.once('close', () => resolve())));
  } else if (p === '/big') {
    res.setHeader('content-length', '2000');
    res.end(Buffer.alloc(2000, 1));
  } else if (p === '/big-chunked') {
    // No Content-Length: the cap must hold while streaming.
    res.write(Buffer.alloc(600, 1));
    res.write(Buffer.alloc(600, 1));
    res.end(Buffer.alloc(600, 1));
  } else if (p === '/secret') {
    // What an attacker wants to reach on the loopback: counted, so a test can prove nobody got here.
    secretHits++;
    res.end('internal');
  } else if (p === '/status') {
    res.statusCode = Number(url.searchParams.get('code'));
    const wait = url.searchParams.get('retry-after');
    if (wait !== null) res.setHeader('retry-after', wait);
    res.end('nope');
  } else {
    res.statusCode = 404;
    res.end();
  }
}

beforeAll(async () => {
  server = createServer(route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  temp.cleanup();
});

const opts = (extra: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({ allowedHosts: ['127.0.0.1'], maxBytes: 1000, totalTimeoutMs: 5000, ...extra });

async function fetchError(url: string, options: SafeFetchOptions): Promise<FetchError> {
  const err = await safeFetch(url, options).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FetchError);
  return err as FetchError;
}

/**
 * A loopback port whose TCP handshake never completes. A worker thread
 * listens with a backlog of 1 and then blocks its own event loop, so it never
 * accepts; the connections opened here fill the kernel's accept queue, and
 * from then on the kernel drops every SYN to the port. A client's connect
 * then hangs in SYN_SENT, as it does to a host that does not answer: the
 * connect timeout, not a server that is slow to answer, is what ends it.
 */
async function unansweredPort(): Promise<{ port: number; close(): Promise<void> }> {
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const server = require('node:net').createServer();
     server.listen(0, '127.0.0.1', 1, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(workerData, 0, 0); // blocks this thread's event loop: nothing is accepted until released
       server.close();
     });`,
    { eval: true, workerData: hold },
  );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const fillers: net.Socket[] = [];
  const close = async () => {
    for (const socket of fillers) socket.destroy();
    Atomics.store(hold, 0, 1);
    Atomics.notify(hold, 0);
    await worker.terminate();
  };
  // Connections complete until the accept queue is full; the first that does not shows it is.
  for (let i = 0; i < 64; i++) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    fillers.push(socket);
    let timer: NodeJS.Timeout | undefined;
    const connected = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      timer = setTimeout(() => resolve(false), 500);
    });
    clearTimeout(timer);
    if (!connected) return { port, close };
  }
  await close();
  throw new Error('the accept queue never filled: this system answers every connection');
}

describe('safeFetch', () => {
  it('fetches from an allowed host and returns status, headers and body', async () => {
    const res = await safeFetch(`${base}/ok`, opts());
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.body?.toString()).toBe('hello');
    expect(res.bytes).toBe(5);
    expect(res.url).toBe(`${base}/ok`);
  });

  it('sends a method, headers and a body (webhooks)', async () => {
    const res = await safeFetch(`${base}/echo`, opts({ method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer t' }, body: '{"a":1}' }));
    expect(JSON.parse(res.body!.toString())).toEqual({ method: 'POST', body: '{"a":1}', type: 'application/json', auth: 'Bearer t' });
  });

  it('streams the body to a file', async () => {
    const file = path.join(temp.dir, 'ok.txt');
    const res = await safeFetch(`${base}/ok`, opts({ toFile: file }));
    expect(res.body).toBeNull();
    expect(res.bytes).toBe(5);
    expect(readFileSync(file, 'utf8')).toBe('hello');
  });

  it("rethrows a failure to write the file (this machine's disk), not as the server unreachable", async () => {
    const dir = path.join(temp.dir, 'locked');
    mkdirSync(dir);
    const locked = lockDirectory(dir);
    try {
      const err = await safeFetch(`${base}/ok`, opts({ toFile: path.join(dir, 'ok.txt') })).then(
        () => null,
        (e: unknown) => e as NodeJS.ErrnoException,
      );
      expect(err).not.toBeNull();
      expect(findFetchError(err)).toBeNull();
      expect(err?.code).toBe(locked.code);
    } finally {
      locked.unlock();
    }
  });

  it('refuses loopback unless the host is allowed, by IP literal and by name', async () => {
    expect((await fetchError(`${base}/ok`, opts({ allowedHosts: [] }))).code).toBe('blocked_address');
    // localhost resolves to 127.0.0.1 (or ::1); allowing the IP does not allow the name.
    expect((await fetchError(`http://localhost:${port}/ok`, opts())).code).toBe('blocked_address');
    const res = await safeFetch(`http://LOCALHOST:${port}/ok`, opts({ allowedHosts: ['localhost'] }));
    expect(res.body?.toString()).toBe('hello');
  });

  it('refuses other schemes', async () => {
    expect((await fetchError('ftp://127.0.0.1/file', opts())).code).toBe('bad_scheme');
    expect((await fetchError('file:///etc/passwd', opts())).code).toBe('bad_scheme');
    expect((await fetchError('not a url', opts())).code).toBe('bad_url');
  });

  it('follows up to 3 redirects and refuses a 4th', async () => {
    const res = await safeFetch(`${base}/hops/3`, opts());
    expect(res.body?.toString()).toBe('hello');
    expect(res.url).toBe(`${base}/ok`);
    expect((await fetchError(`${base}/hops/4`, opts())).code).toBe('too_many_redirects');
    expect((await fetchError(`${base}/loop`, opts())).code).toBe('too_many_redirects');
  });

  it('checks every redirect target: metadata address, loopback behind an allowed name, other schemes', async () => {
    const to = (target: string) => `/to?url=${encodeURIComponent(target)}`;
    expect((await fetchError(`${base}${to('http://169.254.169.254/latest/meta-data/')}`, opts())).code).toBe('blocked_address');
    expect((await fetchError(`${base}${to('http://[fd00:ec2::254]/')}`, opts())).code).toBe('blocked_address');
    expect((await fetchError(`${base}${to('http://[::ffff:127.0.0.2]/')}`, opts())).code).toBe('blocked_address');
    expect((await fetchError(`${base}${to('http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data/')}`, opts())).code).toBe('blocked_address');
    expect((await fetchError(`${base}${to('http://[::ffff:0:a9fe:a9fe]/latest/meta-data/')}`, opts())).code).toBe('blocked_address');
    // Only "localhost" is allowed: its redirect to the IP literal 127.0.0.1 is refused.
    const viaName = `http://localhost:${port}${to(`http://127.0.0.1:${port}/ok`)}`;
    expect((await fetchError(viaName, opts({ allowedHosts: ['localhost'] }))).code).toBe('blocked_address');
    expect((await fetchError(`${base}${to('file:///etc/passwd')}`, opts())).code).toBe('bad_scheme');
  });

  it('turns a 303 after POST into a GET and drops credentials across origins', async () => {
    const res = await safeFetch(`${base}/to?status=303&url=/echo`, opts({ method: 'POST', body: 'x', headers: { authorization: 'Bearer t' } }));
    expect(JSON.parse(res.body!.toString())).toMatchObject({ method: 'GET', body: '', auth: 'Bearer t' });
    const cross = await safeFetch(`${base}/to?url=${encodeURIComponent(`http://localhost:${port}/ok`)}`, opts({ allowedHosts: ['127.0.0.1', 'localhost'], headers: { authorization: 'Bearer t' } }));
    expect(cross.headers['x-seen-auth']).toBe('');
  });

  it('turns a 301 or 302 after POST into a GET without a body', async () => {
    for (const status of [301, 302]) {
      const res = await safeFetch(`${base}/to?status=${status}&url=/echo`, opts({ method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }));
      expect([status, JSON.parse(res.body!.toString())]).toEqual([status, expect.objectContaining({ method: 'GET', body: '' })]);
    }
  });

  it('drops every credential header across origins: API key, cookie, proxy authorization', async () => {
    const credentials = { authorization: 'Bearer t', 'X-Api-Key': 'k', cookie: 'session=s', 'proxy-authorization': 'Basic cA==' };
    // Same origin: all four reach the target, so the server would see any that were kept.
    const same = await safeFetch(`${base}/to?url=/credentials`, opts({ headers: credentials }));
    expect(JSON.parse(same.body!.toString())).toEqual(['authorization', 'x-api-key', 'cookie', 'proxy-authorization']);
    const cross = await safeFetch(`${base}/to?url=${encodeURIComponent(`http://localhost:${port}/credentials`)}`, opts({ allowedHosts: ['127.0.0.1', 'localhost'], headers: credentials }));
    expect(JSON.parse(cross.body!.toString())).toEqual([]);
  });

  it('times out a slow answer, before and during the body', async () => {
    // The server answers after 2 s: a success here would mean the timeout never fired.
    const slow = await fetchError(`${base}/slow-head`, opts({ totalTimeoutMs: 300 }));
    expect(slow.code).toBe('timeout');
    expect(slow.transient).toBe(true);
    expect((await fetchError(`${base}/slow-body`, opts({ totalTimeoutMs: 300 }))).code).toBe('timeout');
  });

  it('with discardBody, answers at the headers and drops a stalled body unread (2xx and error statuses)', async () => {
    // The total timeout is far past this test's own: a request that waited for the body would time the
    // test out (at a short timeout, the 503 would end as the same http_status error, only later).
    const discarding = opts({ discardBody: true, totalTimeoutMs: 10 * 60_000 });
    const before = stalledHungUp.length;
    const res = await safeFetch(`${base}/stalled-body`, discarding);
    expect([res.status, res.headers['content-type'], res.body, res.bytes]).toEqual([200, 'text/plain', null, 0]);
    const refused = await fetchError(`${base}/stalled-body?status=503`, discarding);
    expect([refused.code, refused.status]).toEqual(['http_status', 503]);
    // Both bodies dropped: Kiln hung up on the two answers, which the server never ends.
    expect(stalledHungUp.length - before).toBe(2);
    await Promise.all(stalledHungUp.slice(before));
    // Without it the same body is waited for, until the timeout.
    expect((await fetchError(`${base}/stalled-body`, opts({ totalTimeoutMs: 300 }))).code).toBe('timeout');
  });

  it('gives up a connection that is never accepted at the connect timeout, long before the total timeout', async () => {
    const silent = await unansweredPort();
    // Both timeouts answer `timeout`: which one fired shows on the socket, which the connect timeout
    // ends with its own error naming its limit, while the total timeout only aborts the request.
    const socketErrors: Array<Error & { code?: string }> = [];
    const realConnect = net.connect.bind(net) as (...args: unknown[]) => net.Socket;
    const connect = vi.spyOn(net, 'connect').mockImplementation(((...args: unknown[]) => {
      const socket = realConnect(...args);
      socket.on('error', (err) => socketErrors.push(err));
      return socket;
    }) as typeof net.connect);
    try {
      // The total timeout is far past this test's own (and the kernel would keep retrying the SYN
      // for about two minutes): were the connect timeout not applied, the test would time out.
      const err = await fetchError(`http://127.0.0.1:${silent.port}/ok`, opts({ connectTimeoutMs: 400, totalTimeoutMs: 10 * 60_000 }));
      expect([err.code, err.transient]).toEqual(['timeout', true]);
      expect(socketErrors).toEqual([expect.objectContaining({ code: 'UND_ERR_CONNECT_TIMEOUT', message: expect.stringContaining('timeout: 400ms') })]);
    } finally {
      connect.mockRestore();
      await silent.close();
    }
  });

  it("throws the caller's own abort reason as is", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('job cancelled')), 100);
    await expect(safeFetch(`${base}/slow-head`, opts({ signal: controller.signal }))).rejects.toThrow('job cancelled');
  });

  it('caps the body, with and without Content-Length, leaving no partial file', async () => {
    expect((await fetchError(`${base}/big`, opts())).code).toBe('too_large');
    expect((await fetchError(`${base}/big-chunked`, opts())).code).toBe('too_large');
    const file = path.join(temp.dir, 'big.bin');
    const err = await fetchError(`${base}/big-chunked`, opts({ toFile: file }));
    expect(err.code).toBe('too_large');
    expect(err.transient).toBe(false);
    expect(existsSync(file)).toBe(false);
    expect((await safeFetch(`${base}/big-chunked`, opts({ maxBytes: 1800 }))).bytes).toBe(1800);
  });

  it('survives a server that closes its connection while a slow reader lags behind (files, several at once)', async () => {
    // "Connection: close", the whole body, then FIN at once: a reader writing to disk lags behind the
    // loopback, and undici 7 used to pause its parser for it and then die on the FIN with an uncatchable
    // AssertionError (nodejs/undici#5360) that ended the process on the first round here.
    const body = Buffer.alloc(4_000_000, 7);
    const closing = net.createServer((socket) => {
      socket.once('data', () => {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
        socket.end(body);
      });
    });
    await new Promise<void>((r) => closing.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(closing.address() as AddressInfo).port}/photo.jpg`;
    try {
      for (let round = 0; round < 5; round++) {
        const files = [0, 1, 2, 3].map((i) => path.join(temp.dir, `closing-${round}-${i}.bin`));
        const answers = await Promise.all(files.map((toFile) => safeFetch(url, opts({ maxBytes: 5_000_000, toFile }))));
        expect(answers.map((a) => a.bytes)).toEqual([body.length, body.length, body.length, body.length]);
        for (const file of files) expect(statSync(file).size).toBe(body.length);
      }
    } finally {
      await new Promise((r) => closing.close(r));
    }
  });

  it('reports HTTP errors with their status, transient for 5xx and 429', async () => {
    const notFound = await fetchError(`${base}/status?code=404`, opts());
    expect([notFound.code, notFound.status, notFound.transient]).toEqual(['http_status', 404, false]);
    const busy = await fetchError(`${base}/status?code=503`, opts());
    expect([busy.code, busy.status, busy.transient]).toEqual(['http_status', 503, true]);
    expect((await fetchError(`${base}/status?code=429`, opts())).transient).toBe(true);
  });

  it("carries the server's Retry-After on an error status, in seconds or as a date", async () => {
    expect((await fetchError(`${base}/status?code=429&retry-after=60`, opts())).retryAfterMs).toBe(60_000);
    const at = new Date(Date.now() + 120_000).toUTCString();
    const dated = (await fetchError(`${base}/status?code=503&retry-after=${encodeURIComponent(at)}`, opts())).retryAfterMs ?? 0;
    expect(dated).toBeGreaterThan(115_000);
    expect(dated).toBeLessThanOrEqual(120_000);
    expect((await fetchError(`${base}/status?code=429`, opts())).retryAfterMs).toBeUndefined();
    expect((await fetchError(`${base}/status?code=429&retry-after=soon`, opts())).retryAfterMs).toBeUndefined();
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT')).toBe(0);
  });

  it('reports a 408 Request Timeout as transient', async () => {
    const err = await fetchError(`${base}/status?code=408`, opts());
    expect([err.code, err.status, err.transient]).toEqual(['http_status', 408, true]);
  });

  it('reports a closed port as unreachable (transient)', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await fetchError(`http://127.0.0.1:${closedPort}/`, opts());
    expect([err.code, err.transient]).toEqual(['unreachable', true]);
  });
});

describe('guardedWebFetch (a fetch for client libraries)', () => {
  const webFetch = (allowedHosts: string[] = ['127.0.0.1']) => guardedWebFetch({ allowedHosts, maxBytes: 1000, totalTimeoutMs: 5000 });

  it('sends a multipart body and answers every status as a Response, body included', async () => {
    const form = new FormData();
    form.append('prompt', 'hello');
    const echoed = await webFetch()(`${base}/echo`, { method: 'POST', body: form });
    expect(echoed).toBeInstanceOf(Response);
    const seen = (await echoed.json()) as { method: string; body: string; type: string };
    expect(seen.method).toBe('POST');
    expect(seen.type).toMatch(/^multipart\/form-data; boundary=/);
    expect(seen.body).toContain('name="prompt"');
    const refused = await webFetch()(`${base}/status?code=400`);
    expect([refused.status, refused.ok, await refused.text()]).toEqual([400, false, 'nope']);
  });

  it("keeps one client's connection open between its requests, and checks a new one as it opens", async () => {
    let connections = 0;
    const count = () => connections++;
    server.on('connection', count);
    try {
      const client = webFetch();
      for (let i = 0; i < 3; i++) {
        expect(await (await client(`${base}/ok`)).text()).toBe('hello');
        // The connection goes back to the pool once undici is done with the answer, a turn after its last byte.
        await new Promise(setImmediate);
      }
      expect(connections).toBe(1);
      // Another name for the same server is a new origin, so a new connection: refused at its lookup.
      await expect(client(`http://localhost:${port}/ok`).then(() => null, (e: unknown) => findFetchError(e)?.code)).resolves.toBe('blocked_address');
      expect(connections).toBe(1);
    } finally {
      server.off('connection', count);
    }
  });

  it('keeps the guard: loopback by another name, redirects to the metadata address, the byte cap', async () => {
    const reason = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => findFetchError(e)?.code);
    expect(await reason(webFetch()(`http://localhost:${port}/ok`))).toBe('blocked_address');
    expect(await reason(webFetch()(`${base}/to?url=${encodeURIComponent('http://169.254.169.254/')}`))).toBe('blocked_address');
    expect(await reason(webFetch()(`${base}/big`))).toBe('too_large');
  });
});

describe('DNS rebinding: the address checked is the address connected to', () => {
  const host = 'rebind.kiln.test';
  const PUBLIC: LookupAddress = { address: '93.184.215.14', family: 4 };
  const LOOPBACK: LookupAddress = { address: '127.0.0.1', family: 4 };
  type AllCallback = (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void;
  const realLookup = dns.lookup.bind(dns);

  /**
   * The name's resolver turns hostile: every resolution made ahead of the
   * connection (dns.promises.lookup, as a check-then-fetch guard would do)
   * answers a public address, while the lookup the socket makes answers `atConnect`.
   * Returns how many times the socket's lookup was asked for the name.
   */
  function rebind(atConnect: LookupAddress[]): { readonly connectLookups: number } {
    let connectLookups = 0;
    vi.spyOn(dns.promises, 'lookup').mockImplementation((async () => [PUBLIC]) as unknown as typeof dns.promises.lookup);
    const lookup = (name: string, options: dns.LookupAllOptions, callback: AllCallback): void => {
      if (name !== host) return realLookup(name, options, callback);
      connectLookups++;
      process.nextTick(() => callback(null, options.all ? atConnect : atConnect.slice(0, 1)));
    };
    vi.spyOn(dns, 'lookup').mockImplementation(lookup as unknown as typeof dns.lookup);
    return {
      get connectLookups() {
        return connectLookups;
      },
    };
  }

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('refuses a name that resolves to 127.0.0.1 only when the socket connects', async () => {
    const before = secretHits;
    const dnsSeen = rebind([LOOPBACK]);
    expect((await fetchError(`http://${host}:${port}/secret`, opts({ allowedHosts: [] }))).code).toBe('blocked_address');
    expect(dnsSeen.connectLookups).toBe(1);
    expect(secretHits).toBe(before);
  });

  it('refuses a name with a public and a loopback address (the socket may pick either)', async () => {
    const before = secretHits;
    rebind([PUBLIC, LOOPBACK]);
    expect((await fetchError(`http://${host}:${port}/secret`, opts({ allowedHosts: [] }))).code).toBe('blocked_address');
    expect(secretHits).toBe(before);
  });

  it('refuses the same rebinding behind a redirect from an allowed host', async () => {
    const before = secretHits;
    rebind([LOOPBACK]);
    const err = await fetchError(`${base}/to?url=${encodeURIComponent(`http://${host}:${port}/secret`)}`, opts());
    expect(err.code).toBe('blocked_address');
    expect(secretHits).toBe(before);
  });
});

describe('isBlockedAddress', () => {
  it.each([
    ['127.0.0.1', true], ['127.255.0.9', true], ['10.1.2.3', true], ['172.16.0.1', true], ['172.31.255.255', true],
    ['192.168.0.10', true], ['169.254.169.254', true], ['100.64.0.1', true], ['100.127.255.254', true],
    ['0.0.0.0', true], ['224.0.0.251', true], ['255.255.255.255', true],
    ['::1', true], ['::', true], ['fe80::1', true], ['fc00::1', true], ['fd00:ec2::254', true], ['ff02::1', true],
    ['::ffff:127.0.0.1', true], ['::ffff:7f00:1', true], ['::ffff:169.254.169.254', true], ['64:ff9b::a00:1', true],
    // Local-use NAT64 (RFC 8215): the metadata address through the operator's translator, and anything else in the /48.
    ['64:ff9b:1::a9fe:a9fe', true], ['64:ff9b:1::169.254.169.254', true], ['64:ff9b:1:ffff::808:808', true], ['64:ff9b:1:a9fe:a9:fe00::', true],
    // IPv4-translated (SIIT, RFC 2765): the IPv4 inside decides.
    ['::ffff:0:127.0.0.1', true], ['::ffff:0:7f00:1', true], ['::ffff:0:a9fe:a9fe', true], ['::ffff:0:10.0.0.1', true], ['::ffff:0:8.8.8.8', false],
    ['8.8.8.8', false], ['1.1.1.1', false], ['172.32.0.1', false], ['100.128.0.1', false], ['93.184.215.14', false],
    ['2606:4700:4700::1111', false], ['::ffff:8.8.8.8', false], ['not-an-ip', true],
    // Reserved IPv4: IETF protocol assignments, documentation (TEST-NET-1/2/3), benchmarking.
    ['192.0.0.1', true], ['192.0.2.1', true], ['198.51.100.1', true], ['203.0.113.1', true], ['198.18.0.1', true], ['198.19.255.254', true],
    // Reserved IPv6: discard, documentation, old site-local; benchmarking, ORCHID, the newer documentation range, SRv6.
    ['100::1', true], ['2001:db8::1', true], ['fec0::1', true],
    ['2001:2::1', true], ['2001:10::1', true], ['2001:20::1', true], ['3fff::1', true], ['5f00::1', true], ['192.88.99.1', true],
    // Addresses just outside those ranges are not.
    ['2001:4860:4860::8888', false], ['2001:30::1', false], ['3ffe:1::1', false], ['192.88.100.1', false],
    // IPv4-compatible (::a.b.c.d, deprecated): the IPv4 inside decides.
    ['::127.0.0.1', true], ['::a9fe:a9fe', true], ['::10.0.0.1', true], ['::8.8.8.8', false],
  ])('%s blocked: %s', (address, expected) => {
    expect(isBlockedAddress(address)).toBe(expected);
  });

  // 6to4 (RFC 3056) carries an IPv4 in bits 16-47; Teredo (RFC 4380) its server's in bits 32-63 and its client's, inverted, in the last 32.
  it.each([
    ['2002:7f00:1::1', true], ['2002:a9fe:a9fe::', true], ['2002:a00:1::', true], ['2002:c0a8:101:1::1', true], ['2002:808:808::1', false],
    // Client 127.0.0.1 and 169.254.169.254 (inverted), public server 65.54.227.120; then a private server 10.0.0.1 with a public client 8.8.8.8.
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', true], ['2001:0:4136:e378:8000:63bf:5601:5601', true], ['2001:0:a00:1:8000:63bf:f7f7:f7f7', true],
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', false], ['2001:4860:4860::8888', false],
  ])('6to4 and Teredo: %s blocked: %s', (address, expected) => {
    expect(isBlockedAddress(address)).toBe(expected);
  });
});
