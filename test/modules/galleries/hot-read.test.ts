import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';

const ROCKET = fixture('rocket_small_640x427.jpg');
/** Its original (1.2 MB) is over the 256 KiB that is kept in memory: always streamed. */
const BIG = fixture('path_2560x1600_olympus_exif.jpg');

interface Uploaded {
  image_id: string;
  urls: Record<'original' | 'medium' | 'thumb' | 'game', string>;
}

async function upload(server: TestServer, user: TestUser, project: string, data = ROCKET): Promise<Uploaded> {
  const res = await postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'r.jpg', data, type: 'image/jpeg' }], user.headers);
  expect(res.status).toBe(201);
  return (await res.json()) as Uploaded;
}

/** Status, headers (without the two that differ on every answer) and body of one GET. */
async function answerOf(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const res = await fetch(url, { headers });
  const all = Object.fromEntries(res.headers);
  delete all.date;
  delete all['x-request-id'];
  return { status: res.status, headers: all, body: Buffer.from(await res.arrayBuffer()) };
}

/** Runs `fn` and returns how many requests the hot paths answered meanwhile. */
async function hotAnswers(server: TestServer, fn: () => Promise<unknown>): Promise<number> {
  const before = server.app.hotPaths.answered;
  await fn();
  return server.app.hotPaths.answered - before;
}

/** One GET as answerOf sees it, and how many times the hot paths answered meanwhile (0: the route did). */
async function countedAnswer(server: TestServer, url: string, headers: Record<string, string> = {}): Promise<{ answer: Awaited<ReturnType<typeof answerOf>>; hot: number }> {
  let answer!: Awaited<ReturnType<typeof answerOf>>;
  const hot = await hotAnswers(server, async () => (answer = await answerOf(url, headers)));
  return { answer, hot };
}

/** A server started with `env`, a user and one uploaded photo in `project`: `fn` gets them and the photo's thumb URL; the server is closed after. */
async function withThumb(env: Record<string, string>, project: string, fn: (server: TestServer, user: TestUser, thumb: string) => Promise<void>): Promise<void> {
  const server = await startServer(env);
  try {
    const user = await registerUser(server.url);
    const image = await upload(server, user, project);
    await fn(server, user, `${server.url}${image.urls.thumb}`);
  } finally {
    await server.close();
  }
}

describe('the hot path for public gallery images', () => {
  let server: TestServer;
  let user: TestUser;
  let image: Uploaded;
  let big: Uploaded;

  beforeAll(async () => {
    server = await startServer();
    user = await registerUser(server.url);
    image = await upload(server, user, 'hot');
    big = await upload(server, user, 'hot-big', BIG);
  });
  afterAll(async () => server.close());

  it('answers a repeated GET exactly as the route does: same status, headers and bytes', async () => {
    for (const size of ['thumb', 'game', 'medium'] as const) {
      const url = `${server.url}${image.urls[size]}`;
      // Another query parameter always takes the route, whichever way the connection is read; the answer is the same.
      const { answer: first, hot: firstHot } = await countedAnswer(server, `${url}&via=route`);
      expect(firstHot).toBe(0);
      const { answer: again, hot: againHot } = await countedAnswer(server, url);
      expect(againHot).toBe(1);
      expect(again).toEqual(first);
      expect(first.status).toBe(200);
      expect(first.headers['content-type']).toBe('image/jpeg');
    }
  });

  it('answers a revalidation with the same 304 as the route', async () => {
    const url = `${server.url}${image.urls.thumb}`;
    const { headers } = await answerOf(url);
    const etag = headers.etag as string;
    const hot = await countedAnswer(server, url, { 'if-none-match': etag });
    expect(hot.hot).toBe(1);
    expect(hot.answer.status).toBe(304);
    expect(hot.answer.body.length).toBe(0);
    // The same request through Fastify: a Range header sends it the long way, If-None-Match still wins.
    const routed = await countedAnswer(server, url, { 'if-none-match': etag, range: 'bytes=0-9' });
    expect(routed.hot).toBe(0);
    expect(hot.answer).toEqual(routed.answer);
    expect((await answerOf(url, { 'if-none-match': '"other"' })).status).toBe(200);
  });

  it('revalidates from the cached row alone, without the bytes: a size too big to keep in memory, or bytes gone from the cache', async () => {
    const url = `${server.url}${big.urls.original}`;
    const { headers } = await answerOf(url);
    const etag = headers.etag as string;
    expect(Number(headers['content-length'])).toBeGreaterThan(256 * 1024);
    // The original is streamed, never kept in memory: a plain GET always takes the route.
    expect(await hotAnswers(server, () => answerOf(url))).toBe(0);
    const hot = await countedAnswer(server, url, { 'if-none-match': etag });
    expect(hot.hot).toBe(1);
    expect(hot.answer.status).toBe(304);
    const routed = await answerOf(url, { 'if-none-match': etag, range: 'bytes=0-9' });
    expect(hot.answer).toEqual(routed);
  });

  it('carries the image answer security headers and the request id, like the route', async () => {
    const url = `${server.url}${image.urls.thumb}`;
    await fetch(url).then((r) => r.arrayBuffer());
    let res!: Response;
    expect(await hotAnswers(server, async () => (res = await fetch(url, { headers: { 'x-request-id': 'trace-42' } })))).toBe(1);
    await res.arrayBuffer();
    expect(res.headers.get('x-request-id')).toBe('trace-42');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; style-src 'unsafe-inline'; sandbox");
    expect(res.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    expect(res.headers.get('x-frame-options')).toBeNull();
  });

  it('is counted in /metrics under the route, like every answer', async () => {
    const url = `${server.url}${image.urls.game}`;
    await fetch(url).then((r) => r.arrayBuffer());
    const count = async (): Promise<number> => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('kiln_http_requests_total{') && l.includes('route="/projects/:project_id/images/:image_id"') && l.includes('status="200"') && l.includes('method="GET"'));
      return Number(line?.split(' ').pop() ?? 0);
    };
    const before = await count();
    expect(await hotAnswers(server, async () => { for (let i = 0; i < 3; i++) await fetch(url).then((r) => r.arrayBuffer()); })).toBe(3);
    expect(await count()).toBe(before + 3);
  });

  it('leaves to the route what it does not handle: credentials, ranges, HEAD, other queries, big sizes', async () => {
    const thumb = `${server.url}${image.urls.thumb}`;
    await fetch(thumb).then((r) => r.arrayBuffer());
    const cases: Array<[string, RequestInit, number]> = [
      [thumb, { headers: { authorization: 'Bearer not-a-token' } }, 401],
      [thumb, { headers: { 'x-api-key': 'bogus' } }, 401],
      [thumb, { headers: user.headers }, 200],
      [thumb, { headers: { range: 'bytes=0-9' } }, 206],
      [thumb, { headers: { 'if-range': '"stale"', range: 'bytes=0-9' } }, 200],
      [thumb, { method: 'HEAD' }, 200],
      [`${thumb}&x=1`, {}, 200],
      [thumb.replace('size=thumb', 'size=huge'), {}, 422],
      [`${server.url}${big.urls.original}`, {}, 200],
      [`${server.url}/projects/hot/images/nosuchimage`, {}, 404],
      [`${server.url}/projects/other/images/${image.image_id}?size=thumb`, {}, 404],
    ];
    for (const [url, init, status] of cases) {
      let res!: Response;
      const hot = await hotAnswers(server, async () => {
        res = await fetch(url, init);
        await res.arrayBuffer();
      });
      expect([url, init, res.status, hot]).toEqual([url, init, status, 0]);
    }
  });

  it('stops answering for an image as soon as it is deleted', async () => {
    const doomed = await upload(server, user, 'hot');
    const url = `${server.url}${doomed.urls.thumb}`;
    await fetch(url).then((r) => r.arrayBuffer());
    expect(await hotAnswers(server, () => fetch(url).then((r) => r.arrayBuffer()))).toBe(1);
    expect((await fetch(`${server.url}/projects/hot/images/${doomed.image_id}`, { method: 'DELETE', headers: user.headers })).status).toBe(204);
    const res = await fetch(url);
    expect(res.status).toBe(404);
  });
});

describe('when the hot path stays out of the way', () => {
  it('is not installed while a default rate limit applies: every read is counted and limited', async () => {
    await withThumb({ RATE_LIMIT_DEFAULT: '3' }, 'limited', async (server, _user, url) => {
      const statuses: number[] = [];
      const hot = await hotAnswers(server, async () => {
        for (let i = 0; i < 4; i++) statuses.push((await fetch(url).then(async (r) => (await r.arrayBuffer(), r))).status);
      });
      expect(statuses).toEqual([200, 200, 200, 429]);
      expect(hot).toBe(0);
    });
  });

  it('is not installed when reads need the owner', async () => {
    await withThumb({ GALLERY_PUBLIC_READ: 'false' }, 'private', async (server, user, url) => {
      expect((await fetch(url, { headers: user.headers })).status).toBe(200);
      const hot = await hotAnswers(server, async () => {
        const res = await fetch(url);
        expect(res.status).not.toBe(200);
      });
      expect(hot).toBe(0);
    });
  });

  it('with CORS on, answers a request without an Origin exactly as the route does, Vary: Origin included', async () => {
    await withThumb({ ALLOWED_ORIGINS: 'https://shop.example', RATE_LIMIT_DEFAULT: '0' }, 'cors-plain', async (server, _user, url) => {
      const { answer: routed, hot: routedHot } = await countedAnswer(server, `${url}&via=route`);
      expect(routedHot).toBe(0);
      expect(routed.headers.vary).toBe('Origin');
      const { answer: hot, hot: hotCount } = await countedAnswer(server, url);
      expect(hotCount).toBe(1);
      expect(hot).toEqual(routed);
      const etag = routed.headers.etag ?? '';
      const routed304 = await countedAnswer(server, `${url}&via=route`, { 'if-none-match': etag });
      const hot304 = await countedAnswer(server, url, { 'if-none-match': etag });
      expect([routed304.hot, hot304.hot]).toEqual([0, 1]);
      expect(hot304.answer).toEqual(routed304.answer);
    });
  });

  it('sends CORS requests the long way, so they get their CORS headers', async () => {
    await withThumb({ ALLOWED_ORIGINS: 'https://shop.example' }, 'cors', async (server, _user, url) => {
      await fetch(url).then((r) => r.arrayBuffer());
      let res!: Response;
      expect(await hotAnswers(server, async () => (res = await fetch(url, { headers: { origin: 'https://shop.example' } })))).toBe(0);
      expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example');
      expect(await hotAnswers(server, () => fetch(url).then((r) => r.arrayBuffer()))).toBe(1);
    });
  });
});
