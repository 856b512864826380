/** The built `kiln serve` runs an edit end to end: the ai_edit kind is registered where jobs run. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../../helpers/config.js';
import { startKiln, type KilnProcess } from '../../helpers/process.js';
import { startFakeOpenAI, type FakeOpenAI } from './fake-openai.js';
import { SERVICE, STATIC_KEY, startEdit, waitForEnd } from './server.js';

let fake: FakeOpenAI;
let kiln: KilnProcess;
const data = tempDataDir();

beforeAll(async () => {
  fake = await startFakeOpenAI();
  kiln = await startKiln({ DATA_DIR: data.dir, API_KEY: STATIC_KEY, OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, FETCH_ALLOWED_HOSTS: '127.0.0.1' });
});
afterAll(async () => {
  await kiln.stop();
  await fake.close();
  data.cleanup();
});

describe('kiln serve', () => {
  it('completes an edit booked through the API', async () => {
    const { initId, book } = await startEdit(kiln.url, SERVICE);
    expect(book.status).toBe(202);
    const end = await waitForEnd(kiln.url, SERVICE, initId);
    expect(end.status).toBe('completed');
    expect(fake.received).toHaveLength(1);
  });
});
