import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONNECTION_IDLE_MS } from '../../../src/app.js';
import type { KilnServer } from '../../../src/platform/http/front-door.js';
import { HOT_HEADERS } from '../../../src/platform/http/hot-path.js';
import { parseHead } from '../../../src/platform/http/request-head.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { getRequest, RawConnection, type RawAnswer } from '../../helpers/raw-http.js';

const ROCKET = fixture('rocket_small_640x427.jpg');
/**
 * A keep-alive timeout far past any test's own, for the servers of tests that
 * wait for a connection to close (RawConnection.whenClosed): a connection
 * that should have been closed otherwise is kept this long, so the test times out.
 */
const KEPT_ALIVE_MS = 10 * 60_000;
const HEAD = 'GET /projects/p/images/i?size=thumb HTTP/1.1\r\nHost: kiln.test';

describe('parseHead: what the front door reads itself', () => {
  it('reads a plain GET: the target and only the headers a hot path may look at', () => {
    const req = parseHead(`${HEAD}\r\nIf-None-Match: "abc"\r\nUser-Agent: test\r\nX-Request-Id:  trace-1 \r\nAccept: */*`);
    expect(req?.method).toBe('GET');
    expect(req?.url).toBe('/projects/p/images/i?size=thumb');
    expect(req?.headers['if-none-match']).toBe('"abc"');
    // Spaces and tabs around a value are not part of it, as in Node.
    expect(req?.headers['x-request-id']).toBe('trace-1');
    expect(Object.keys(req?.headers ?? {})).not.toContain('user-agent');
  });

  it('takes tabs around a value off too, as Node does', () => {
    const req = parseHead(`${HEAD}\r\nIf-None-Match:\t"abc"\t\r\nX-Request-Id: \t trace-2\t `);
    expect(req?.headers['if-none-match']).toBe('"abc"');
    expect(req?.headers['x-request-id']).toBe('trace-2');
  });

  it('takes no header for one it treats when a single character of the name differs', () => {
    const treated = [...HOT_HEADERS, 'host', 'connection', 'content-length', 'transfer-encoding', 'expect', 'upgrade', 'te', 'http2-settings'];
    for (const name of treated) {
      for (let i = 0; i < name.length; i++) {
        const near = `${name.slice(0, i)}${name[i] === 'x' ? 'y' : 'x'}${name.slice(i + 1)}`;
        // Taken for Host it would be a second Host, for Connection not keep-alive, for the others a body: each a refusal.
        const req = parseHead(`${HEAD}\r\n${near}: close`);
        expect(req, near).not.toBeNull();
        expect(Object.values(req?.headers ?? {}).every((v) => v === undefined), near).toBe(true);
      }
    }
    // A near miss of Host is not a Host: without the real one, the head is Node's (which answers 400).
    expect(parseHead(`GET / HTTP/1.1\r\nHosx: x`)).toBeNull();
    expect(parseHead(`GET / HTTP/1.1\r\nXost: x`)).toBeNull();
  });

  it('reads at most 64 header lines, Host included', () => {
    expect(parseHead(`${HEAD}${'\r\nX-A: 1'.repeat(63)}`)).not.toBeNull();
    expect(parseHead(`${HEAD}${'\r\nX-A: 1'.repeat(64)}`)).toBeNull();
  });

  it('reads header names in any case', () => {
    const req = parseHead(`GET / HTTP/1.1\r\nHOST: x\r\nIF-NONE-MATCH: "a"\r\nAuthorization: Bearer t\r\nconnection: Keep-Alive`);
    expect(req?.headers['if-none-match']).toBe('"a"');
    expect(req?.headers.authorization).toBe('Bearer t');
  });

  it('matches names exactly, but for case: a near miss is another header', () => {
    const req = parseHead(`GET / HTTP/1.1\r\nhoST: x\r\nIf_None_Match: "a"\r\nContent_Length: 5\r\nIf-None-Matcher: "b"\r\nX-Api-Key2: k`);
    expect(req).not.toBeNull();
    expect(req?.headers['if-none-match']).toBeUndefined();
    expect(req?.headers['x-api-key']).toBeUndefined();
    expect(parseHead(`GET / HTTP/1.1\r\nHost: x\r\nCONTENT-LENGTH: 0`)).toBeNull();
    expect(parseHead(`GET / HTTP/1.1\r\nHost: x\r\nX-API-KEY: k`)?.headers['x-api-key']).toBe('k');
  });

  it('leaves to Node anything else: other methods and versions, bodies, connection changes, odd bytes and lines', () => {
    const refused: Array<[string, string]> = [
      ['POST', `POST / HTTP/1.1\r\nHost: x`],
      ['HEAD', `HEAD / HTTP/1.1\r\nHost: x`],
      ['HTTP/1.0', `GET / HTTP/1.0\r\nHost: x`],
      ['absolute form', `GET http://x/ HTTP/1.1\r\nHost: x`],
      ['no Host', `GET / HTTP/1.1\r\nAccept: */*`],
      ['two Hosts', `${HEAD}\r\nHost: y`],
      ['a hot header twice', `${HEAD}\r\nIf-None-Match: "a"\r\nif-none-match: "b"`],
      ['Content-Length', `${HEAD}\r\nContent-Length: 0`],
      ['Transfer-Encoding', `${HEAD}\r\nTransfer-Encoding: chunked`],
      ['Expect', `${HEAD}\r\nExpect: 100-continue`],
      ['Upgrade', `${HEAD}\r\nUpgrade: websocket`],
      ['TE', `${HEAD}\r\nTE: trailers`],
      ['Connection: close', `${HEAD}\r\nConnection: close`],
      ['Connection: upgrade', `${HEAD}\r\nConnection: upgrade`],
      ['a bare LF inside a line', `${HEAD}\r\nX-A: 1\nContent-Length: 5`],
      ['a bare CR inside a line', `${HEAD}\r\nX-A: 1\rContent-Length: 5`],
      ['a folded line', `${HEAD}\r\nX-A: 1\r\n  continued`],
      ['a byte above ASCII', `${HEAD}\r\nX-A: caf\u00e9`],
      ['a NUL', `${HEAD}\r\nX-A: a\u0000b`],
      ['a DEL', `${HEAD}\r\nX-A: a\u007fb`],
      ['a separator in a name', `${HEAD}\r\nX(A): 1`],
      ['an @ in a name', `${HEAD}\r\nX@A: 1`],
      ['a slash in a name', `${HEAD}\r\nX/A: 1`],
      ['HTTP2-Settings', `${HEAD}\r\nHTTP2-Settings: AAMAAABkAAQAAP__`],
      ['a space in a name', `${HEAD}\r\nX A: 1`],
      ['a space before the colon', `${HEAD}\r\nX-A : 1`],
      ['an empty name', `${HEAD}\r\n: 1`],
      ['a line without a colon', `${HEAD}\r\nX-A`],
      ['an empty line', `${HEAD}\r\n\r\nX-A: 1`],
      ['a space in the target', `GET /a b HTTP/1.1\r\nHost: x`],
      ['more than 64 headers', `${HEAD}${'\r\nX-A: 1'.repeat(65)}`],
    ];
    for (const [what, head] of refused) expect(parseHead(head), what).toBeNull();
  });

  it('keeps a header called __proto__ out of the request, and the request object clean', () => {
    const req = parseHead(`${HEAD}\r\n__proto__: x\r\nconstructor: y`);
    expect(req).not.toBeNull();
    expect(Object.getPrototypeOf(req?.headers)).toBe(Object.prototype);
    expect(Object.keys(req?.headers ?? {}).sort()).toEqual(['authorization', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'origin', 'range', 'x-api-key', 'x-request-id']);
  });
});

describe('the front door on a running server', () => {
  let server: TestServer;
  let user: TestUser;
  let thumb: string;
  let etag: string;
  let door: KilnServer['frontDoor'];

  beforeAll(async () => {
    server = await startServer();
    // Taken by each connection as it opens.
    server.app.server.keepAliveTimeout = KEPT_ALIVE_MS;
    door = (server.app.server as KilnServer).frontDoor;
    user = await registerUser(server.url);
    const res = await postMultipart(`${server.url}/projects/door/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET, type: 'image/jpeg' }], user.headers);
    expect(res.status).toBe(201);
    thumb = ((await res.json()) as { urls: { thumb: string } }).urls.thumb;
    // The first read takes the route and leaves the row and bytes in memory.
    const first = await fetch(`${server.url}${thumb}`);
    await first.arrayBuffer();
    etag = first.headers.get('etag') as string;
  });
  afterAll(async () => server.close());

  /** Runs `fn` and returns how many requests the front door answered and how many connections it handed over meanwhile. */
  async function counted<T>(fn: () => Promise<T>): Promise<{ value: T; answered: number; handedOver: number }> {
    const [answered, handedOver] = [door.answered, door.handedOver];
    const value = await fn();
    return { value, answered: door.answered - answered, handedOver: door.handedOver - handedOver };
  }

  /** The answer with its Date line taken out: the only line that may differ between two answers of one request. */
  function withoutDate(a: RawAnswer): string {
    return a.head.replace(/\r\nDate: [^\r]*/, '');
  }

  it('answers a cached image byte for byte as Node writes the same answer', async () => {
    const headers = { 'X-Request-Id': 'same-id', 'If-None-Match': etag };
    // On a fresh connection the front door reads and answers both requests.
    const door1 = await RawConnection.open(server.url);
    const direct = await counted(async () => {
      door1.send(getRequest(thumb, headers) + getRequest(thumb, { 'X-Request-Id': 'same-id' }));
      return door1.answers(2);
    });
    door1.destroy();
    expect(direct.answered).toBe(2);
    // On a connection handed to Node (its first request is not a hot one), Node's parser reads them and the hot path answers through Node's response.
    const node = await RawConnection.open(server.url);
    node.send(getRequest('/health'));
    expect((await node.answers(1))[0]?.status).toBe(200);
    const viaNode = await counted(async () => {
      node.send(getRequest(thumb, headers) + getRequest(thumb, { 'X-Request-Id': 'same-id' }));
      return node.answers(2);
    });
    node.destroy();
    expect(viaNode.answered).toBe(0);

    const [door304, door200] = direct.value as [RawAnswer, RawAnswer];
    const [node304, node200] = viaNode.value as [RawAnswer, RawAnswer];
    expect(door304.status).toBe(304);
    expect(withoutDate(door304)).toBe(withoutDate(node304));
    expect(door200.status).toBe(200);
    expect(withoutDate(door200)).toBe(withoutDate(node200));
    expect(door200.body.equals(node200.body)).toBe(true);
    expect(door200.headers.date).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(door200.head).toContain('\r\nConnection: keep-alive\r\nKeep-Alive: timeout=');
  });

  it('answers pipelined requests in order, and hands the connection to Node at the first it does not answer', async () => {
    const conn = await RawConnection.open(server.url);
    const run = await counted(async () => {
      conn.send(getRequest(thumb, { 'X-Request-Id': 'one' }) + getRequest(thumb, { 'X-Request-Id': 'two', 'If-None-Match': etag }) + getRequest('/projects/door/images/nosuchimage', { 'X-Request-Id': 'three' }) + getRequest(thumb, { 'X-Request-Id': 'four' }));
      return conn.answers(4);
    });
    conn.destroy();
    expect(run.value.map((a) => [a.status, a.headers['x-request-id']])).toEqual([
      [200, 'one'],
      [304, 'two'],
      [404, 'three'],
      [200, 'four'],
    ]);
    // The first two by the front door; the 404 and everything after by Node.
    expect(run.answered).toBe(2);
    expect(run.handedOver).toBe(1);
  });

  /** A GET of the thumbnail whose first `at` bytes arrive 50 ms before the rest, counted. */
  async function sentInTwo(at: number, requestId: string) {
    const conn = await RawConnection.open(server.url);
    const request = getRequest(thumb, { 'X-Request-Id': requestId });
    const run = await counted(async () => {
      conn.send(request.slice(0, at));
      await new Promise((r) => setTimeout(r, 50));
      conn.send(request.slice(at));
      return conn.answers(1);
    });
    conn.destroy();
    return run;
  }

  it('hands over a head that arrives in two pieces, and Node answers it', async () => {
    const run = await sentInTwo(20, 'split');
    expect(run.value[0]?.status).toBe(200);
    expect(run.value[0]?.headers['x-request-id']).toBe('split');
    expect(run.value[0]?.body.length).toBeGreaterThan(0);
    expect(run.answered).toBe(0);
    expect(run.handedOver).toBe(1);
  });

  it('keeps serving a connection after handing it over: an upload on it, then reads again', async () => {
    const conn = await RawConnection.open(server.url);
    conn.send(getRequest(thumb));
    expect((await conn.answers(1))[0]?.status).toBe(200);
    const boundary = 'kilnboundary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="r.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
      ROCKET,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    conn.send(
      Buffer.concat([
        Buffer.from(`POST /projects/door/images HTTP/1.1\r\nHost: kiln.test\r\nAuthorization: ${user.headers.authorization}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${body.length}\r\n\r\n`),
        body,
      ]),
    );
    const [created] = await conn.answers(1);
    expect(created?.status).toBe(201);
    conn.send(getRequest(thumb, { 'If-None-Match': etag }));
    expect((await conn.answers(1))[0]?.status).toBe(304);
    conn.destroy();
  });

  it("leaves a malformed request to Node, which answers 400 as it always did", async () => {
    const conn = await RawConnection.open(server.url);
    const run = await counted(async () => {
      conn.send(`GET ${thumb} HTTP/1.1\r\nHost: kiln.test\r\nBad Name: x\r\n\r\n`);
      return conn.answers(1);
    });
    conn.destroy();
    expect(run.value[0]?.status).toBe(400);
    expect(run.answered).toBe(0);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('leaves to Node every head Node refuses, though the line looks like a header: Node answers 400', async () => {
    const heads = [
      `GET ${thumb} HTTP/1.1\r\nHost: kiln.test\r\nX-A: a\u007fb\r\n\r\n`,
      `GET ${thumb} HTTP/1.1\r\nHost: kiln.test\r\nX(A): 1\r\n\r\n`,
      // No Host: a name one letter off is not one.
      `GET ${thumb} HTTP/1.1\r\nHosx: kiln.test\r\n\r\n`,
    ];
    for (const head of heads) {
      const conn = await RawConnection.open(server.url);
      const run = await counted(async () => {
        conn.send(head);
        return conn.answers(1);
      });
      conn.destroy();
      expect(run.value[0]?.status, JSON.stringify(head)).toBe(400);
      expect(run.answered, JSON.stringify(head)).toBe(0);
    }
  });

  it('answers a If-None-Match with tabs around it as Node does: 304', async () => {
    const conn = await RawConnection.open(server.url);
    const run = await counted(async () => {
      conn.send(`GET ${thumb} HTTP/1.1\r\nHost: kiln.test\r\nIf-None-Match:\t${etag}\t\r\n\r\n`);
      return conn.answers(1);
    });
    conn.destroy();
    expect(run.value[0]?.status).toBe(304);
    expect(run.answered).toBe(1);
  });

  it('reads a head of up to 8 KiB itself and leaves a longer one to Node, whose own limit then applies', async () => {
    /** A request for the thumb whose head (without the blank line) is `length` bytes. */
    const ofLength = (length: number): string => {
      const bare = getRequest(thumb, { 'X-Pad': '' });
      const request = getRequest(thumb, { 'X-Pad': 'p'.repeat(length - (bare.length - 4)) });
      expect(request.length - 4).toBe(length);
      return request;
    };
    const cases: Array<[number, number, { answered: number; handedOver: number }]> = [
      [8 * 1024, 200, { answered: 1, handedOver: 0 }],
      [8 * 1024 + 1, 200, { answered: 0, handedOver: 1 }],
      // Past Node's 16 KiB.
      [20 * 1024, 431, { answered: 0, handedOver: 1 }],
    ];
    for (const [length, status, counts] of cases) {
      const conn = await RawConnection.open(server.url);
      const run = await counted(async () => {
        conn.send(ofLength(length));
        return conn.answers(1);
      });
      conn.destroy();
      expect(run.value[0]?.status, `${length}`).toBe(status);
      expect({ answered: run.answered, handedOver: run.handedOver }, `${length}`).toEqual(counts);
    }
  });

  it('hands over a first read of fewer than four bytes, and Node answers the request', async () => {
    const run = await sentInTwo(2, 'short');
    expect(run.value[0]?.status).toBe(200);
    expect(run.value[0]?.headers['x-request-id']).toBe('short');
    expect(run.handedOver).toBe(1);
  });

  it('writes the Keep-Alive line as Node does for any keep-alive timeout: seconds rounded down, none for 0', async () => {
    try {
      for (const timeout of [1500, 0]) {
        server.app.server.keepAliveTimeout = timeout;
        const headers = { 'X-Request-Id': 'ka', 'If-None-Match': etag };
        const viaDoor = await RawConnection.open(server.url);
        const direct = await counted(async () => {
          viaDoor.send(getRequest(thumb, headers));
          return viaDoor.answers(1);
        });
        viaDoor.destroy();
        expect(direct.answered).toBe(1);
        const node = await RawConnection.open(server.url);
        node.send(getRequest('/health'));
        await node.answers(1);
        node.send(getRequest(thumb, headers));
        const [viaNode] = await node.answers(1);
        node.destroy();
        expect(withoutDate(direct.value[0] as RawAnswer), `${timeout}`).toBe(withoutDate(viaNode as RawAnswer));
      }
    } finally {
      server.app.server.keepAliveTimeout = KEPT_ALIVE_MS;
    }
  });

  it("leaves every connection to Node while the server limits requests per connection, so Node's limit holds", async () => {
    const before = server.app.server.maxRequestsPerSocket;
    server.app.server.maxRequestsPerSocket = 2;
    try {
      // Counted from the connection's opening: the front door hands it over as it accepts it.
      const run = await counted(async () => {
        const conn = await RawConnection.open(server.url);
        conn.send(getRequest(thumb) + getRequest(thumb));
        const answers = await conn.answers(2);
        conn.destroy();
        return answers;
      });
      expect(run.value.map((a) => a.status)).toEqual([200, 200]);
      // Node's parser read both: it counts them.
      expect(run.answered).toBe(0);
      expect(run.handedOver).toBe(1);
    } finally {
      server.app.server.maxRequestsPerSocket = before;
    }
  });

  it('keeps reading a connection after answering a request it had to load for', async () => {
    const res = await postMultipart(`${server.url}/projects/door/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET, type: 'image/jpeg' }], user.headers);
    const cold = ((await res.json()) as { urls: { thumb: string } }).urls.thumb;
    const conn = await RawConnection.open(server.url);
    const loads = door.loads;
    const run = await counted(async () => {
      conn.send(getRequest(cold, { 'X-Request-Id': 'cold' }));
      const first = await conn.answers(1);
      // A later request on the same connection, once the first is answered.
      conn.send(getRequest(cold, { 'X-Request-Id': 'again' }));
      return [...first, ...(await conn.answers(1))];
    });
    conn.destroy();
    expect(door.loads).toBeGreaterThan(loads);
    expect(run.value.map((a) => [a.status, a.headers['x-request-id']])).toEqual([
      [200, 'cold'],
      [200, 'again'],
    ]);
    expect(run.answered).toBe(2);
    expect(run.handedOver).toBe(0);
  });

  it('echoes a safe X-Request-Id and replaces an unsafe one', async () => {
    const conn = await RawConnection.open(server.url);
    conn.send(getRequest(thumb, { 'X-Request-Id': 'ok-id.1' }) + getRequest(thumb, { 'X-Request-Id': 'not ok' }));
    const [safe, unsafe] = await conn.answers(2);
    conn.destroy();
    expect(safe?.headers['x-request-id']).toBe('ok-id.1');
    expect(unsafe?.headers['x-request-id']).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('answers what it has read and then closes when the client has sent all it will', async () => {
    const conn = await RawConnection.open(server.url);
    conn.send(getRequest(thumb, { 'If-None-Match': etag }));
    conn.socket.end();
    expect((await conn.answers(1))[0]?.status).toBe(304);
    await conn.whenClosed();
  });

  it('stops reading while a client leaves its answers unread, and answers everything in order once it reads', async () => {
    const n = 2000;
    const conn = await RawConnection.open(server.url);
    conn.socket.pause();
    const pauses = door.pauses;
    let requests = '';
    for (let i = 0; i < n; i++) requests += getRequest(thumb, { 'X-Request-Id': `r${i}` });
    conn.send(requests);
    await new Promise((r) => setTimeout(r, 300));
    // 2000 thumbs are 34 MB: far more than the kernel's buffers hold, so the server must have stopped.
    expect(door.pauses).toBeGreaterThan(pauses);
    conn.socket.resume();
    const answers = await conn.answers(n, 30_000);
    conn.destroy();
    expect(answers.every((a, i) => a.status === 200 && a.headers['x-request-id'] === `r${i}` && a.body.length === Number(a.headers['content-length']))).toBe(true);
  });
});

describe('the front door when an answer needs what is not in memory', () => {
  it('loads the row and the bytes, answers in order, and keeps the connection; a missing image still goes to Node', async () => {
    const server = await startServer();
    try {
      const door = (server.app.server as KilnServer).frontDoor;
      const user = await registerUser(server.url);
      const res = await postMultipart(`${server.url}/projects/cold/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET, type: 'image/jpeg' }], user.headers);
      const urls = ((await res.json()) as { urls: { thumb: string; game: string } }).urls;
      // Nothing of this image has been read yet: neither its row nor its bytes are in memory.
      const conn = await RawConnection.open(server.url);
      const before = { answered: door.answered, loads: door.loads, handedOver: door.handedOver };
      conn.send(getRequest(urls.thumb, { 'X-Request-Id': 'a' }) + getRequest(urls.game, { 'X-Request-Id': 'b' }) + getRequest('/projects/cold/images/nosuchimage', { 'X-Request-Id': 'c' }));
      const [thumb, game, missing] = await conn.answers(3);
      conn.destroy();
      expect([thumb?.status, game?.status, missing?.status]).toEqual([200, 200, 404]);
      expect([thumb?.headers['x-request-id'], game?.headers['x-request-id'], missing?.headers['x-request-id']]).toEqual(['a', 'b', 'c']);
      // The row and thumb bytes for the first, the game bytes for the second, a failed row load for the third.
      expect(door.loads - before.loads).toBe(3);
      expect(door.answered - before.answered).toBe(2);
      expect(door.handedOver - before.handedOver).toBe(1);
      // The same bytes the route sends (a credential sends the request the long way).
      for (const [url, answer] of [[urls.thumb, thumb], [urls.game, game]] as const) {
        const routed = await fetch(`${server.url}${url}`, { headers: user.headers });
        expect(Buffer.from(await routed.arrayBuffer()).equals(answer?.body ?? Buffer.alloc(0))).toBe(true);
        expect(answer?.headers.etag).toBe(routed.headers.get('etag'));
      }
    } finally {
      await server.close();
    }
  });
});

/**
 * A server whose front door is waiting on a load that does not end: the blob store's reads of
 * small bytes wait from the moment a thumbnail of `project` is asked for on `conn` until `release()`.
 */
async function waitingOnLoad(project: string, keepAliveMs = KEPT_ALIVE_MS): Promise<{ server: TestServer; conn: RawConnection; release: () => void }> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let gated = false;
  const server = await startServer(
    {},
    {
      prepare: (ctx) => {
        const inner = ctx.blobs;
        const slow = Object.create(inner) as typeof inner;
        slow.readAll = async (key: string) => {
          if (gated) await gate;
          return inner.readAll(key);
        };
        ctx.blobs = slow;
      },
    },
  );
  server.app.server.keepAliveTimeout = keepAliveMs;
  try {
    const user = await registerUser(server.url);
    const res = await postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET, type: 'image/jpeg' }], user.headers);
    const thumb = ((await res.json()) as { urls: { thumb: string } }).urls.thumb;
    const door = (server.app.server as KilnServer).frontDoor;
    gated = true;
    const loads = door.loads;
    const conn = await RawConnection.open(server.url);
    conn.send(getRequest(thumb));
    await expect.poll(() => door.loads, { timeout: 20_000 }).toBe(loads + 1);
    return { server, conn, release };
  } catch (err) {
    release();
    await server.close();
    throw err;
  }
}

describe('the front door and the server lifecycle', () => {
  it('answers a request it waits on when the server closes, then closes its connection', async () => {
    const { server, conn, release } = await waitingOnLoad('wait');
    let closed = false;
    try {
      const closing = server.close().then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 100));
      expect(conn.ended).toBe(false);
      release();
      const [answer] = await conn.answers(1);
      expect(answer?.status).toBe(200);
      await conn.whenClosed();
      await closing;
    } finally {
      release();
      if (!closed) await server.close();
    }
  });

  it('keeps a connection it waits on a load for past the keep-alive timeout, as Node keeps one with a request in progress', async () => {
    // 300 ms between requests; the load takes longer. Before, the keep-alive timer ended the connection mid-wait: an empty reply.
    const { server, conn, release } = await waitingOnLoad('slow-store', 300);
    try {
      await new Promise((r) => setTimeout(r, 900));
      expect(conn.ended).toBe(false);
      release();
      const [answer] = await conn.answers(1);
      expect(answer?.status).toBe(200);
      // Idle again: the keep-alive timeout applies as before.
      await conn.closedWithin(3_000);
    } finally {
      release();
      await server.close();
    }
  });

  it('closes at once, on closeAllConnections (the end of the shutdown grace), a connection it waits on a load for', async () => {
    const { server, conn, release } = await waitingOnLoad('force');
    try {
      server.app.server.closeAllConnections();
      await conn.closedWithin(5_000);
      expect(conn.pending).toBe(0);
    } finally {
      release();
      await server.close();
    }
  });

  it("closes an idle connection after the server's keep-alive timeout, and lets the server close while a client holds one open", async () => {
    const server = await startServer();
    let closed = false;
    try {
      const user = await registerUser(server.url);
      const res = await postMultipart(`${server.url}/projects/close/images`, [{ field: 'file', filename: 'r.jpg', data: ROCKET, type: 'image/jpeg' }], user.headers);
      const thumb = ((await res.json()) as { urls: { thumb: string } }).urls.thumb;
      await fetch(`${server.url}${thumb}`).then((r) => r.arrayBuffer());
      const door = (server.app.server as KilnServer).frontDoor;
      const answered = door.answered;

      // A connection takes the server's keep-alive timeout as it opens: `held`'s is far past this test's own.
      server.app.server.keepAliveTimeout = KEPT_ALIVE_MS;
      const held = await RawConnection.open(server.url);
      held.send(getRequest(thumb));
      expect((await held.answers(1))[0]?.status).toBe(200);
      // Kept alive once answered: the same connection takes the next request.
      held.send(getRequest(thumb));
      expect((await held.answers(1))[0]?.status).toBe(200);

      server.app.server.keepAliveTimeout = 300;
      const idle = await RawConnection.open(server.url);
      idle.send(getRequest(thumb));
      expect((await idle.answers(1))[0]?.status).toBe(200);
      expect(door.answered).toBe(answered + 3);
      // The server closes `idle` on its own 300 ms timer; `held`, idle for longer, is still open: its timeout is its own.
      await idle.whenClosed();
      expect(idle.ended).toBe(true);
      expect(held.ended).toBe(false);

      // The server closes though `held` is open: waiting out its keep-alive would time this test out.
      await server.close();
      closed = true;
      await held.whenClosed();
    } finally {
      if (!closed) await server.close();
    }
  });
});

describe('a client that stops reading', () => {
  it('has its connection closed once nothing moves on it for the idle timeout (2 minutes by default)', async () => {
    const server = await startServer();
    try {
      expect(server.app.server.timeout).toBe(CONNECTION_IDLE_MS);
      const user = await registerUser(server.url);
      const res = await postMultipart(`${server.url}/projects/stalled/images`, [{ field: 'file', filename: 'p.jpg', data: fixture('path_2560x1600_olympus_exif.jpg'), type: 'image/jpeg' }], user.headers);
      const original = ((await res.json()) as { urls: { original: string } }).urls.original;
      // Taken by each connection as Node takes it over; half a second instead of two minutes. Set after the
      // upload, whose connection waits without a byte moving while the photo renders (long, on a loaded machine).
      server.app.server.timeout = 500;
      const connections = (): Promise<number> => new Promise((resolve, reject) => server.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
      const conn = await RawConnection.open(server.url);
      // Asks for some 40 MB of originals and reads none of it: the socket's buffers fill, and the answers stall.
      conn.socket.pause();
      conn.send(getRequest(original).repeat(40));
      try {
        for (let i = 0; (await connections()) > 0; i++) {
          expect(i, 'the stalled connection is still open').toBeLessThan(100);
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        conn.destroy();
      }
    } finally {
      await server.close();
    }
  });
});
