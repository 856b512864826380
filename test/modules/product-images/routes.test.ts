import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUser, type TestUser } from '../../helpers/users.js';
import type { TestServer } from '../../helpers/server.js';
import { startFakeProvider, type FakeProvider } from './fake-provider.js';
import { ADMIN, adminHeaders, ean13, requestFetch, startProductServer, waitForJob, type JobView } from './server.js';

let provider: FakeProvider;
let server: TestServer;
let alice: TestUser;
let bob: TestUser;
let admin: { authorization: string };

beforeAll(async () => {
  provider = await startFakeProvider();
  server = await startProductServer(provider.url, { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  alice = await registerUser(server.url, 'alice');
  bob = await registerUser(server.url, 'bob');
  admin = await adminHeaders(server.url);
});
afterAll(async () => {
  await server?.close();
  await provider?.close();
});

async function getJson(path: string, headers: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${server.url}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('fetching a product picture by barcode', () => {
  const code = '3017620422003';

  it('answers 202 with a queued job, which completes with the stored picture', async () => {
    provider.products.set(code, { kind: 'ok', name: 'Nutella', image: '/img/rocket.jpg' });
    const { status, body } = await requestFetch(server.url, alice.headers, { ean_code: '3017620422003', description: 'hazelnut spread' });
    expect(status).toBe(202);
    expect(body).toEqual({ job_id: expect.stringMatching(/^[A-Za-z0-9_-]{16,}$/), status: 'queued', ean_code: code });

    const job = await waitForJob(server.url, alice.headers, body.job_id as string);
    expect(job).toMatchObject({
      job_id: body.job_id,
      type: 'ean_fetch',
      status: 'completed',
      progress: 1,
      attempts: 1,
      max_attempts: 3,
      input: { ean_code: code, description: 'hazelnut spread' },
      error: null,
      user_id: alice.id,
    });
    expect(job.result).toMatchObject({ ean_code: code, product_name: 'Nutella', width: 640, height: 427, fetched_from_provider: true });
    for (const t of [job.created_at, job.started_at, job.finished_at]) expect(t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('serves the picture\'s record to every signed-in user', async () => {
    for (const user of [alice, bob]) {
      const { status, body } = await getJson(`/api/v1/images/${code}`, user.headers);
      expect(status).toBe(200);
      expect(body).toEqual({
        ean_code: code,
        product_name: 'Nutella',
        source_url: provider.at('/img/rocket.jpg'),
        fetched_at: expect.stringMatching(/Z$/),
        width: 640,
        height: 427,
        urls: {
          original: `/api/v1/images/${code}/file?size=original`,
          medium: `/api/v1/images/${code}/file?size=medium`,
          thumb: `/api/v1/images/${code}/file?size=thumb`,
        },
      });
    }
  });

  it('serves the three sizes as JPEG, with ETag and 304', async () => {
    const expected: Record<string, [number, number]> = { original: [640, 427], medium: [640, 427], thumb: [400, 267] };
    for (const [size, [w, h]] of Object.entries(expected)) {
      const res = await fetch(`${server.url}/api/v1/images/${code}/file?size=${size}`, { headers: bob.headers });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/jpeg');
      const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', w, h]);
      const again = await fetch(`${server.url}/api/v1/images/${code}/file?size=${size}`, { headers: { ...bob.headers, 'if-none-match': res.headers.get('etag') as string } });
      expect(again.status).toBe(304);
    }
    const part = await fetch(`${server.url}/api/v1/images/${code}/file?size=thumb`, { headers: { ...bob.headers, range: 'bytes=0-9' } });
    expect(part.status).toBe(206);
    expect((await part.arrayBuffer()).byteLength).toBe(10);
    const plain = await fetch(`${server.url}/api/v1/images/${code}/file`, { headers: bob.headers });
    expect((await sharp(Buffer.from(await plain.arrayBuffer())).metadata()).width).toBe(640);
  });

  it('finds the picture by any spelling of the same barcode', async () => {
    expect((await getJson(`/api/v1/images/3017-6204-22003`, alice.headers)).status).toBe(200);
    expect((await getJson(`/api/v1/images/03017620422003`, alice.headers)).body.ean_code).toBe(code);
  });

  it('serves the picture file by any spelling of the same barcode too: the same bytes as under its stored form', async () => {
    const stored = await fetch(`${server.url}/api/v1/images/${code}/file?size=thumb`, { headers: alice.headers });
    expect(stored.status).toBe(200);
    const bytes = Buffer.from(await stored.arrayBuffer());
    for (const spelled of ['3017-6204-22003', '03017620422003', '3017620%20422003']) {
      const res = await fetch(`${server.url}/api/v1/images/${spelled}/file?size=thumb`, { headers: alice.headers });
      expect([spelled, res.status]).toEqual([spelled, 200]);
      expect(res.headers.get('etag')).toBe(stored.headers.get('etag'));
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    }
    const invalid = await fetch(`${server.url}/api/v1/images/3017620422004/file?size=thumb`, { headers: alice.headers });
    expect(invalid.status).toBe(422);
    expect(((await invalid.json()) as { code: string }).code).toBe('invalid_ean');
  });

  it('refuses an unknown size with 422 and anonymous callers with 401', async () => {
    const bad = await fetch(`${server.url}/api/v1/images/${code}/file?size=game`, { headers: alice.headers });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { code: string }).code).toBe('validation_error');
    for (const path of [`/api/v1/images/${code}`, `/api/v1/images/${code}/file?size=thumb`, '/api/v1/jobs']) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status).toBe(401);
    }
    const post = await fetch(`${server.url}/api/v1/fetch-image`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ean_code: code }) });
    expect(post.status).toBe(401);
  });

  it('answers 404 for a barcode nobody fetched yet, and 422 for an invalid one', async () => {
    const none = await getJson(`/api/v1/images/${ean13(999)}`, alice.headers);
    expect(none.status).toBe(404);
    expect(none.body.code).toBe('image_not_found');
    const file = await fetch(`${server.url}/api/v1/images/${ean13(999)}/file?size=thumb`, { headers: alice.headers });
    expect(file.status).toBe(404);
    const invalid = await getJson('/api/v1/images/4006381333932', alice.headers);
    expect(invalid.status).toBe(422);
    expect(invalid.body.code).toBe('invalid_ean');
    // In the path too, only spaces and hyphens are removed: a tab or a no-break space is not a barcode.
    expect((await getJson('/api/v1/images/4006381%20333931', alice.headers)).body.code).toBe('image_not_found');
    for (const spelled of ['4006381%09333931', '4006381%C2%A0333931']) {
      const res = await getJson(`/api/v1/images/${spelled}`, alice.headers);
      expect([res.status, res.body.code]).toEqual([422, 'invalid_ean']);
    }
  });

  it('stores a UPC-A as its EAN-13', async () => {
    provider.products.set('0036000291452', { kind: 'ok', name: null, image: '/img/redirect-once.jpg' });
    const { status, body } = await requestFetch(server.url, alice.headers, { ean_code: '036000291452' });
    expect(status).toBe(202);
    expect(body.ean_code).toBe('0036000291452');
    const job = await waitForJob(server.url, alice.headers, body.job_id as string);
    expect(job.status).toBe('completed');
    expect(provider.productHits('0036000291452')).toBe(1);
    expect((await getJson('/api/v1/images/036000291452', bob.headers)).body).toMatchObject({ ean_code: '0036000291452', product_name: null });
  });
});

describe('who sees which job', () => {
  let alicesJob: string;
  let bobsJob: string;

  beforeAll(async () => {
    provider.products.set(ean13(1), { kind: 'ok', name: 'One', image: '/img/rocket.jpg' });
    provider.products.set(ean13(2), { kind: 'missing' });
    alicesJob = (await requestFetch(server.url, alice.headers, { ean_code: ean13(1) })).body.job_id as string;
    bobsJob = (await requestFetch(server.url, bob.headers, { ean_code: ean13(2) })).body.job_id as string;
    await waitForJob(server.url, alice.headers, alicesJob);
    await waitForJob(server.url, bob.headers, bobsJob);
  });

  it('shows a job to its owner and answers 404 to anyone else, as if it did not exist', async () => {
    expect((await getJson(`/api/v1/jobs/${alicesJob}`, alice.headers)).status).toBe(200);
    const other = await getJson(`/api/v1/jobs/${alicesJob}`, bob.headers);
    expect(other.status).toBe(404);
    const missing = await getJson('/api/v1/jobs/no-such-job', bob.headers);
    expect(missing.status).toBe(404);
    expect(other.body.code).toBe(missing.body.code);
  });

  it('lets an admin see every job', async () => {
    expect((await getJson(`/api/v1/jobs/${alicesJob}`, admin)).body.user_id).toBe(alice.id);
    expect((await getJson(`/api/v1/jobs/${bobsJob}`, admin)).body.user_id).toBe(bob.id);
    const all = (await getJson('/api/v1/jobs?limit=100', admin)).body.jobs as JobView[];
    const ids = all.map((j) => j.job_id);
    expect(ids).toContain(alicesJob);
    expect(ids).toContain(bobsJob);
  });

  it('lists only your own jobs, newest first, filtered and paged', async () => {
    const mine = (await getJson('/api/v1/jobs?limit=100', bob.headers)).body.jobs as JobView[];
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((j) => j.user_id === bob.id)).toBe(true);

    const all = (await getJson('/api/v1/jobs?limit=100', alice.headers)).body.jobs as JobView[];
    expect(all.length).toBeGreaterThanOrEqual(3);
    const times = all.map((j) => j.created_at);
    expect([...times].sort().reverse()).toEqual(times);

    const failed = (await getJson('/api/v1/jobs?status=failed', bob.headers)).body.jobs as JobView[];
    expect(failed.map((j) => j.job_id)).toEqual([bobsJob]);
    expect((await getJson('/api/v1/jobs?status=failed', alice.headers)).body.jobs).toEqual([]);
    expect(((await getJson('/api/v1/jobs?type=ean_fetch&limit=100', alice.headers)).body.jobs as JobView[]).length).toBe(all.length);
    expect((await getJson('/api/v1/jobs?type=ai_edit', alice.headers)).body.jobs).toEqual([]);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = (await getJson(`/api/v1/jobs?limit=1${q}`, alice.headers)).body as { jobs: JobView[]; next_cursor: string | null };
      expect(page.jobs.length).toBeLessThanOrEqual(1);
      seen.push(...page.jobs.map((j) => j.job_id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual(all.map((j) => j.job_id));
  });

  it('answers 20 jobs a page when no limit is sent, with a cursor to the rest', async () => {
    const carol = await registerUser(server.url, 'carol');
    const at = (i: number) => new Date(Date.UTC(2030, 0, 1, 0, 0, i)).toISOString();
    await server.ctx.db.kysely
      .insertInto('jobs')
      .values(
        Array.from({ length: 21 }, (_, i) => ({
          job_id: `job-carol-${String(i).padStart(2, '0')}`,
          type: 'ean_fetch',
          status: 'completed',
          progress: 1,
          attempts: 1,
          max_attempts: 3,
          input: '{}',
          result: 'null',
          error: null,
          user_id: carol.id,
          dedupe_key: null,
          created_at: at(i),
          started_at: at(i),
          finished_at: at(i),
          run_after: at(i),
          locked_by: null,
          locked_until: null,
          recoveries: 0,
        })),
      )
      .execute();
    const first = (await getJson('/api/v1/jobs', carol.headers)).body as { jobs: JobView[]; next_cursor: string | null };
    expect(first.jobs.map((j) => j.job_id)).toEqual(Array.from({ length: 20 }, (_, i) => `job-carol-${String(20 - i).padStart(2, '0')}`));
    expect(first.next_cursor).toEqual(expect.any(String));
    const rest = (await getJson(`/api/v1/jobs?cursor=${encodeURIComponent(first.next_cursor as string)}`, carol.headers)).body as { jobs: JobView[]; next_cursor: string | null };
    expect(rest.jobs.map((j) => j.job_id)).toEqual(['job-carol-00']);
    expect(rest.next_cursor).toBeNull();
  });

  it('refuses a bad status, limit or cursor', async () => {
    expect((await getJson('/api/v1/jobs?status=exploded', alice.headers)).status).toBe(422);
    expect((await getJson('/api/v1/jobs?limit=0', alice.headers)).status).toBe(422);
    expect((await getJson('/api/v1/jobs?limit=101', alice.headers)).status).toBe(422);
    for (const bogus of ['bogus', Buffer.from('{"not":"a page"}').toString('base64url')]) {
      const cursor = await getJson(`/api/v1/jobs?cursor=${bogus}`, alice.headers);
      expect(cursor.status).toBe(422);
      expect(cursor.body).toMatchObject({ status: 422, code: 'invalid_cursor', errors: [{ field: 'querystring.cursor', message: expect.any(String) }] });
    }
  });

  it('reads an empty query value as a parameter not given', async () => {
    const plain = await getJson('/api/v1/jobs', alice.headers);
    expect(plain.status).toBe(200);
    const empty = await getJson('/api/v1/jobs?status=&type=&limit=&cursor=', alice.headers);
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual(plain.body);
    // One empty next to real ones: the real ones still count.
    const failed = await getJson('/api/v1/jobs?status=failed&limit=', bob.headers);
    expect(failed.status).toBe(200);
    expect((failed.body.jobs as JobView[]).every((j) => j.status === 'failed')).toBe(true);
  });
});
