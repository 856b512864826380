/**
 * Kiln's own pages (/docs, /redoc, /upload) work when a browser reaches Kiln
 * by a name that is not loopback over plain HTTP, as in the Dockerfile's
 * setup (HOST=0.0.0.0, no TLS). Browsers treat 127.0.0.1 as secure, so the
 * name `kiln.test` is mapped to it inside Chromium: a page whose CSP told the
 * browser to upgrade its requests would load none of its scripts there.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../helpers/server.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--host-resolver-rules=MAP kiln.test 127.0.0.1'];

describe('the CSP', () => {
  it('does not tell browsers to upgrade requests to https, and runs no inline script', async () => {
    const server = await startServer();
    try {
      const csp = (await fetch(`${server.url}/docs/`)).headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'self'");
      expect(csp).not.toContain('upgrade-insecure-requests');
      expect(csp.split(';').map((d) => d.trim())).toContain("script-src 'self'");
      expect(csp).toContain("script-src-attr 'none'");
    } finally {
      await server.close();
    }
  });
});

describe.skipIf(!haveChromium)('Kiln pages over plain HTTP on a non-loopback name', () => {
  let server: TestServer;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    server = await startServer();
    base = server.url.replace('127.0.0.1', 'kiln.test');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  /**
   * The page loaded; `failed` lists the requests that failed or were answered
   * with an error (the /favicon.ico a page without <link rel="icon"> makes
   * the browser ask for, say), anything the CSP refused or a script threw,
   * and any other error in the console.
   */
  async function open(pathname: string): Promise<{ failed: string[]; page: import('playwright-core').Page }> {
    const page = await browser.newPage();
    const failed: string[] = [];
    page.on('requestfailed', (request) => failed.push(request.url()));
    page.on('response', (response) => {
      if (response.status() >= 400) failed.push(`${response.status()} ${response.url()}`);
    });
    page.on('pageerror', (err) => failed.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      // Helmet's Cross-Origin-Opener-Policy is ignored over plain HTTP on a name that is not loopback, and Chromium says so: the setup under test, not a fault.
      if (msg.type() === 'error' && !msg.text().startsWith('The Cross-Origin-Opener-Policy header has been ignored')) failed.push(`console: ${msg.text()}`);
    });
    await page.goto(`${base}${pathname}`, { waitUntil: 'networkidle' });
    // The browser asks for /favicon.ico on its own after the load (not a request of the page's): its 404 shows in the console a moment later.
    await page.waitForTimeout(1000);
    return { failed, page };
  }

  /** Whether the page names its icon, so that the browser does not ask for /favicon.ico. */
  const hasIcon = (page: import('playwright-core').Page) => page.locator('link[rel~="icon"]').count();

  it('/docs loads Swagger UI and lists the routes', async () => {
    const { failed, page } = await open('/docs/');
    expect(failed).toEqual([]);
    expect(await hasIcon(page)).toBeGreaterThan(0);
    await page.locator('.opblock').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('.opblock').count()).toBeGreaterThan(10);
    await page.close();
  });

  it('/redoc and /upload load everything they ask for, with no error in the console', async () => {
    for (const pathname of ['/redoc', '/upload']) {
      const { failed, page } = await open(pathname);
      expect(failed, pathname).toEqual([]);
      expect(await hasIcon(page), pathname).toBeGreaterThan(0);
      await page.close();
    }
  });
});
