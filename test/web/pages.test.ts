import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../helpers/config.js';
import { MAIN, startKiln, type KilnProcess } from '../helpers/process.js';

// The built server (dist/) has no copy of src/web: it must still find and serve the page.
describe.skipIf(!existsSync(MAIN))('the built `kiln serve` serves the upload page', () => {
  // Made in beforeAll: a skipped describe still runs its body, and would leave the directory.
  let temp: ReturnType<typeof tempDataDir> | undefined;
  let kiln: KilnProcess;

  beforeAll(async () => {
    temp = tempDataDir();
    kiln = await startKiln({ DATA_DIR: temp.dir });
  });
  afterAll(async () => {
    await kiln?.stop();
    temp?.cleanup();
  });

  it('GET /upload and /upload.js', async () => {
    const page = await fetch(`${kiln.url}/upload`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await page.text()).toContain('<script type="module" src="/upload.js"></script>');
    const script = await fetch(`${kiln.url}/upload.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await script.text()).toContain("fetch('/auth/login'");
  });

  it('lists both in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${kiln.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    for (const p of ['/upload', '/api/v1/fetch-image', '/api/v1/jobs', '/api/v1/jobs/{job_id}', '/api/v1/images/{ean_code}', '/api/v1/images/{ean_code}/file']) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
  });
});
