/**
 * The upload page, end to end in headless Chromium (Debian's, never a
 * downloaded one) driven by playwright-core, against a listening Kiln and a
 * fake product database on 127.0.0.1. Leaves a screenshot in the OS temp dir.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../auth/helpers.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { FIXTURES } from '../helpers/upload.js';
import { registerUser, type TestUser } from '../helpers/users.js';
import { startFakeProvider, type FakeProvider } from '../modules/product-images/fake-provider.js';
import { startProductServer } from '../modules/product-images/server.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) process.stderr.write(`\nNOTICE: no Chromium at ${CHROMIUM} (set CHROMIUM_PATH): the upload page test is skipped.\n`);

// The test runs in Node (no DOM types); these are the few browser shapes it reads inside the page.
type LoadedImage = { complete: boolean; naturalWidth: number };
const loadedWidth = (el: unknown): number | false => {
  const img = el as LoadedImage;
  return img.complete && img.naturalWidth;
};

/** A form control's own `disabled` property, read in the page. */
const isDisabledControl = (el: unknown): boolean => (el as { disabled: boolean }).disabled;

/** The id of the element with the focus, read in the page. */
const focusedId = (): string | undefined => (globalThis as unknown as { document: { activeElement: { id?: string } | null } }).document.activeElement?.id;

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
export const SCREENSHOT = path.join(os.tmpdir(), 'kiln-upload-page.png');

describe.skipIf(!haveChromium)('the upload page in a browser', () => {
  let provider: FakeProvider;
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let user: TestUser;
  const problems: string[] = [];

  beforeAll(async () => {
    provider = await startFakeProvider();
    provider.products.set('3017620422003', { kind: 'slow', delayMs: 400, name: 'Nutella', image: '/img/rocket.jpg' });
    // Three answers 1 s apart (two 503s, then the product): a job of about 3.5 s.
    provider.products.set('4000000000006', { kind: 'flaky', failures: 2, delayMs: 1000, name: 'Slow tea', image: '/img/rocket.jpg' });
    server = await startProductServer(provider.url);
    user = await registerUser(server.url, 'shopkeeper');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    page = await browser.newPage({ viewport: { width: 900, height: 1300 } });
    // A script error or a CSP refusal would break the page silently; the test fails instead.
    // ("Failed to load resource" is Chromium noting the 4xx answers the error cases expect.)
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console: ${msg.text()}`);
    });
    page.on('requestfinished', (request) => {
      if (new URL(request.url()).pathname === '/favicon.ico') problems.push('the page asked for /favicon.ico');
    });
    await page.goto(`${server.url}/upload`);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await provider?.close();
  });

  it('is a page served by Kiln, with its script from Kiln', async () => {
    expect(await page.title()).toMatch(/Kiln/);
    const res = await fetch(`${server.url}/upload`);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect((await fetch(`${server.url}/upload.js`)).headers.get('content-type')).toMatch(/javascript/);
    // Nothing to do before signing in: every control of the two forms is disabled (not focusable).
    // (The DOM's own `disabled`: Playwright's isDisabled also counts the section's aria-disabled, which leaves fields focusable.)
    for (const id of ['upload-button', 'project', 'photo', 'ean', 'fetch-button']) {
      expect(await page.locator(`#${id}`).evaluate(isDisabledControl), id).toBe(true);
    }
  });

  it('says so when the password is wrong', async () => {
    await page.getByLabel('Email').fill(user.email);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('#login-message').textContent()).toBe('Wrong email or password.');
    expect(await page.locator('#signed-in').isHidden()).toBe(true);
  });

  it('signs in', async () => {
    await page.getByLabel('Password').fill(user.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#signed-in').waitFor({ state: 'visible' });
    expect(await page.locator('#signed-in-as').textContent()).toBe(user.email);
    // The form that had the focus is gone: the gallery name has it now.
    expect(await page.evaluate(focusedId)).toBe('project');
    expect(await page.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem('kiln.access_token'))).toMatch(/^ey/);
  });

  it('uploads a photo with a progress bar and shows its thumbnail', async () => {
    await page.getByLabel('Gallery name').fill('shop-window');
    await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg'));
    await page.getByRole('button', { name: 'Upload' }).click();
    const thumb = page.getByRole('img', { name: 'Thumbnail of the photo you uploaded' });
    await thumb.waitFor({ state: 'visible' });
    await expect.poll(() => thumb.evaluate(loadedWidth), { timeout: 10_000 }).toBe(400);
    expect(await page.locator('#upload-progress').evaluate((p) => (p as unknown as { value: number }).value)).toBe(100);
    expect(await page.locator('#upload-message').textContent()).toContain('2560 × 1600');
    const listing = (await (await fetch(`${server.url}/projects/shop-window/images`)).json()) as { images: unknown[] };
    expect(listing.images).toHaveLength(1);
  });

  it('says so when a file is not an image', async () => {
    await page.getByLabel(/^Photo/).setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('just some text, not a photo') });
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.locator('#upload-message').textContent()).toContain('not an image Kiln accepts');
  });

  it('says what to do with an HEIC photo the server cannot decode (HEVC, as iPhones write)', async () => {
    await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'rocket_hevc_160x107.heic'));
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.locator('#upload-message').textContent()).toBe(
      'That is an HEIC photo, which this server cannot decode. Send it as JPEG (on an iPhone: Settings, Camera, Formats, Most Compatible).',
    );
    expect(await page.getByText('Photo (JPEG, PNG, WebP or AVIF)').count()).toBe(1);
  });

  it('says so when a barcode is invalid', async () => {
    await page.getByLabel(/^Barcode/).fill('4006381333932');
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#barcode-message').textContent()).toContain('not a valid barcode');
    expect(provider.hits.size).toBe(0);
  });

  it('fetches a product picture by barcode, showing the job until it completes', async () => {
    const seen = new Set<string>();
    const status = page.locator('#job-status');
    await page.getByLabel(/^Barcode/).fill('3017 6204 22003');
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    const img = page.locator('#product-image');
    await expect
      .poll(
        async () => {
          seen.add((await status.textContent()) ?? '');
          return img.evaluate(loadedWidth);
        },
        { timeout: 15_000, interval: 50 },
      )
      .toBe(400);
    expect(await status.textContent()).toBe('completed');
    expect([...seen].some((s) => s === 'queued' || s === 'processing')).toBe(true);
    expect(await img.getAttribute('alt')).toBe('Picture of Nutella');
    expect(await page.locator('#product-caption').textContent()).toContain('Nutella');
    expect(provider.productHits('3017620422003')).toBe(1);
  });

  it('says so when the product database has no such product', async () => {
    await page.getByLabel(/^Barcode/).fill('5901234123457');
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#barcode-message').textContent(), { timeout: 10_000 }).toContain('no product with this barcode');
    expect(await page.locator('#job-status').textContent()).toBe('failed');
    expect(await page.locator('#product-figure').isHidden()).toBe(true);
  });

  it('ran without script errors, and leaves a screenshot to look at', async () => {
    // Back to the successful product so the screenshot shows both pictures.
    await page.getByLabel(/^Barcode/).fill('3017620422003');
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#barcode-message').textContent(), { timeout: 10_000 }).toBe('Picture fetched.');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(problems).toEqual([]);
  });

  it('watches a long job less and less often, so that it stays well inside the rate limit', async () => {
    const polls: number[] = [];
    const onRequest = (request: { url(): string }) => {
      if (new URL(request.url()).pathname.startsWith('/api/v1/jobs/')) polls.push(Date.now());
    };
    page.on('request', onRequest);
    try {
      await page.getByLabel(/^Barcode/).fill('4000000000006');
      await page.getByRole('button', { name: 'Fetch picture' }).click();
      await expect.poll(() => page.locator('#barcode-message').textContent(), { timeout: 20_000 }).toBe('Picture fetched.');
    } finally {
      page.off('request', onRequest);
    }
    // Over the job's 3.5 s: 0.5, 0.75, 1.1, 1.7 s apart, not seven polls 0.5 s apart.
    expect(polls.length).toBeGreaterThanOrEqual(3);
    expect(polls.length).toBeLessThanOrEqual(5);
    const gaps = polls.slice(1).map((t, i) => t - (polls[i] as number));
    expect(gaps.at(-1)).toBeGreaterThan(1000);
  });

  it('signing out clears the pictures and messages, disables the forms and moves the focus to the email field', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#login-form').waitFor({ state: 'visible' });
    expect(await page.locator('#upload-figure').isHidden()).toBe(true);
    expect(await page.locator('#product-figure').isHidden()).toBe(true);
    expect(await page.locator('#product-image').getAttribute('src')).toBeNull();
    expect(await page.locator('#upload-message').textContent()).toBe('');
    expect(await page.locator('#barcode-message').textContent()).toBe('');
    expect(await page.locator('#job-status').textContent()).toBe('none yet');
    expect(await page.locator('#project').evaluate(isDisabledControl)).toBe(true);
    expect(await page.evaluate(focusedId)).toBe('email');
  });
});

/** A value the page keeps in sessionStorage, read in the page. */
const stored = (key: string) => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem(key);

describe.skipIf(!haveChromium)('the upload page when its access token runs out', () => {
  const clock = new TestClock();
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let user: TestUser;

  async function signIn(): Promise<void> {
    await page.getByLabel('Email').fill(user.email);
    await page.getByLabel('Password').fill(user.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#signed-in').waitFor({ state: 'visible' });
  }

  beforeAll(async () => {
    // The server's clock moves; the browser's does not, as when a tab stays open past ACCESS_TOKEN_LIFETIME.
    server = await startServer({}, { clock });
    user = await registerUser(server.url);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    page = await browser.newPage();
    await page.goto(`${server.url}/upload`);
    await signIn();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('renews it with the refresh token and asks again, so the person stays signed in', async () => {
    const first = await page.evaluate(stored, 'kiln.access_token');
    clock.advanceMinutes(16);
    // Met with a 401 first; answered, after the renewal, by the barcode check.
    await page.getByLabel(/^Barcode/).fill('4006381333932');
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#barcode-message').textContent()).toContain('not a valid barcode');
    expect(await page.locator('#signed-in').isVisible()).toBe(true);
    expect(await page.evaluate(stored, 'kiln.access_token')).not.toBe(first);
  });

  it('sends an upload that met a 401 once more with the renewed token', async () => {
    const before = await page.evaluate(stored, 'kiln.refresh_token');
    clock.advanceMinutes(16);
    await page.getByLabel('Gallery name').fill('renewed');
    await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg'));
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.getByRole('img', { name: 'Thumbnail of the photo you uploaded' }).evaluate(loadedWidth), { timeout: 10_000 }).toBe(400);
    expect(await page.evaluate(stored, 'kiln.refresh_token')).not.toBe(before);
    const listing = (await (await fetch(`${server.url}/projects/renewed/images`)).json()) as { images: unknown[] };
    expect(listing.images).toHaveLength(1);
  });

  it('renews once for requests that meet a 401 together (a refresh token used twice would end the session)', async () => {
    clock.advanceMinutes(16);
    const refreshes: string[] = [];
    const onRequest = (request: { url(): string }) => {
      if (new URL(request.url()).pathname === '/auth/refresh') refreshes.push(request.url());
    };
    page.on('request', onRequest);
    // A slow renewal: the second request meets its 401 while the first one's renewal is still out.
    await page.route('**/auth/refresh', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      await route.continue();
    });
    await page.getByLabel('Gallery name').fill('together');
    await page.getByLabel(/^Barcode/).fill('4006381333932');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.getByRole('img', { name: 'Thumbnail of the photo you uploaded' }).evaluate(loadedWidth), { timeout: 10_000 }).toBe(400);
    await expect.poll(() => page.locator('#barcode-message').textContent()).toContain('not a valid barcode');
    page.off('request', onRequest);
    await page.unrouteAll();
    expect(refreshes).toHaveLength(1);
    expect(await page.locator('#signed-in').isVisible()).toBe(true);
    const listing = (await (await fetch(`${server.url}/projects/together/images`)).json()) as { images: unknown[] };
    expect(listing.images).toHaveLength(1);
  });

  it('signing out ends the refresh token on the server too', async () => {
    const refreshToken = await page.evaluate(stored, 'kiln.refresh_token');
    expect(refreshToken).toBeTruthy();
    const loggedOut = page.waitForResponse((response) => new URL(response.url()).pathname === '/auth/logout');
    await page.getByRole('button', { name: 'Sign out' }).click();
    expect((await loggedOut).status()).toBe(204);
    expect(await page.evaluate(stored, 'kiln.refresh_token')).toBeNull();
    const refreshed = await fetch(`${server.url}/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: refreshToken }) });
    expect(refreshed.status).toBe(401);
  });

  it('signs out, saying so, once the refresh token has run out too', async () => {
    await signIn();
    clock.advanceMinutes(61); // past SHORT_REFRESH_TOKEN_LIFETIME
    await page.getByLabel('Gallery name').fill('too-late');
    await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg'));
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.locator('#login-message').textContent()).toBe('Your session has ended; sign in again.');
    expect(await page.locator('#login-form').isVisible()).toBe(true);
    expect(await page.evaluate(stored, 'kiln.access_token')).toBeNull();
    expect((await fetch(`${server.url}/projects/too-late/images`)).status).toBe(404);
  });
});
