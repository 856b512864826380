import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUser, type TestUser } from '../../helpers/users.js';
import type { TestServer } from '../../helpers/server.js';
import { startFakeProvider, type FakeProvider } from './fake-provider.js';
import { requestFetch, startProductServer } from './server.js';

let provider: FakeProvider;
let server: TestServer;
let alice: TestUser;

beforeAll(async () => {
  provider = await startFakeProvider();
  server = await startProductServer(provider.url);
  alice = await registerUser(server.url, 'alice');
});
afterAll(async () => {
  await server?.close();
  await provider?.close();
});

async function jobCount(): Promise<number> {
  const res = await fetch(`${server.url}/api/v1/jobs?limit=100`, { headers: alice.headers });
  return ((await res.json()) as { jobs: unknown[] }).jobs.length;
}

describe('barcodes that are refused with 422 invalid_ean, creating no job', () => {
  const cases: Array<[string, unknown]> = [
    ['wrong check digit', '4006381333932'],
    ['too short (7 digits)', '9638507'],
    // Lengths no GTIN has, each with a check digit that would be right: the length alone refuses them.
    ['7 digits with a right check digit', '9638501'],
    ['9 digits with a right check digit', '963850742'],
    ['10 digits with a right check digit', '1234567895'],
    ['11 digits with a right check digit', '03600029143'],
    ['between lengths (11 digits)', '03600029145'],
    ['between lengths (9 digits)', '963850741'],
    ['too long (15 digits)', '100123456789020'],
    ['far too long', '4'.repeat(60)],
    ['letters', '40063813339A1'],
    ['a sign', '+4006381333931'],
    ['dots', '4006.381.333.931'],
    ['empty', ''],
    ['only spaces and hyphens', ' - - '],
    ['a tab inside', '4006381\t333931'],
    ['a trailing line break', '4006381333931\n'],
    ['a no-break space inside', '4006381\u00a0333931'],
    ['an ideographic space inside', '4006381\u3000333931'],
    ['unicode digits', '٤٠٠٦٣٨١٣٣٣٩٣١'],
    ['a negative number', -4006381333931],
    ['a fraction', 4006381333931.5],
    ['null', null],
    ['a list', ['4006381333931']],
  ];

  for (const [what, ean_code] of cases) {
    it(what, async () => {
      const before = await jobCount();
      const { status, body } = await requestFetch(server.url, alice.headers, { ean_code });
      expect(status).toBe(422);
      expect(body.code).toBe('invalid_ean');
      expect(body.detail).toEqual(expect.any(String));
      expect(await jobCount()).toBe(before);
    });
  }

  it('a missing ean_code or an unknown field is a 422 validation error', async () => {
    expect((await requestFetch(server.url, alice.headers, {})).status).toBe(422);
    expect((await requestFetch(server.url, alice.headers, { ean_code: '4006381333931', colour: 'red' })).status).toBe(422);
    expect((await requestFetch(server.url, alice.headers, { ean_code: '4006381333931', description: 'x'.repeat(1001) })).status).toBe(422);
    expect(provider.hits.size).toBe(0);
  });
});

describe('barcodes that are accepted and normalised', () => {
  const cases: Array<[string, unknown, string]> = [
    ['EAN-13 with spaces and hyphens', ' 400-6381 333931 ', '4006381333931'],
    ['UPC-A becomes EAN-13 with a leading 0', '036000291452', '0036000291452'],
    ['GTIN-8 stays 8 digits', '96385074', '96385074'],
    ['GTIN-14 starting with 0 becomes EAN-13', '00012345678905', '0012345678905'],
    ['another GTIN-14 stays 14 digits', '10012345678902', '10012345678902'],
    ['a JSON number', 4006381333931, '4006381333931'],
  ];
  for (const [what, ean_code, stored] of cases) {
    it(what, async () => {
      const { status, body } = await requestFetch(server.url, alice.headers, { ean_code });
      expect(status).toBe(202);
      expect(body.ean_code).toBe(stored);
    });
  }
});
