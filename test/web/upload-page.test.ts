/**
 * The upload page, end to end in headless Chromium (Debian's, never a
 * downloaded one) driven by playwright-core, against a listening Kiln and a
 * fake product database on 127.0.0.1. Leaves a screenshot in the OS temp dir.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page, type Request, type Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../auth/helpers.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { FIXTURES } from '../helpers/upload.js';
import { registerUser, type TestUser } from '../helpers/users.js';
import { startFakeProvider, type FakeProvider } from '../modules/product-images/fake-provider.js';
import { ean13, startProductServer } from '../modules/product-images/server.js';

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

/** Whether an element is hidden (its `hidden` property, which the page sets), read in the page. */
const isHidden = (el: unknown): boolean => (el as { hidden: boolean }).hidden;

/** How wide the page's content is, read in the page: more than the viewport means it scrolls sideways (or, on a phone, zooms out). */
const pageWidth = (): number => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth;

/** Signs in on the page's form (it must show it) and waits until the page says so. */
async function signIn(page: Page, user: TestUser): Promise<void> {
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signed-in').waitFor({ state: 'visible' });
}

/** Whether a button does nothing for now: disabled, or marked busy with aria-disabled. Read in the page. */
const isInert = (el: unknown): boolean => {
  const button = el as { disabled: boolean; getAttribute(name: string): string | null };
  return button.disabled || button.getAttribute('aria-disabled') === 'true';
};

/**
 * Focuses a button, presses `key` on it, and waits for the answer to the
 * request that sends (to `pathname`) and for the button to work again: the
 * page has done all that the press leads to.
 */
async function pressAndWait(page: Page, buttonId: string, key: 'Enter' | 'Space', pathname: string): Promise<void> {
  const button = page.locator(`#${buttonId}`);
  await button.focus();
  const answered = page.waitForResponse((response) => new URL(response.url()).pathname === pathname);
  await page.keyboard.press(key);
  await answered;
  await expect.poll(() => button.evaluate(isInert)).toBe(false);
}

/** A problem+json answer of 429, as Kiln's rate limits give it. */
const RATE_LIMITED = {
  status: 429,
  contentType: 'application/problem+json',
  headers: { 'retry-after': '42' },
  body: JSON.stringify({ type: 'about:blank', title: 'Too Many Requests', status: 429, code: 'rate_limited', detail: 'Too many requests; try again later.' }),
};

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

  it('leaves the keyboard focus on "Sign in" once the sign-in is refused', async () => {
    // A button disabled while its request runs drops the focus to <body>: a keyboard user starts over from the top.
    await page.getByLabel('Password').fill('still-not-the-password');
    await pressAndWait(page, 'login-button', 'Enter', '/auth/login');
    expect(await page.locator('#login-message').textContent()).toBe('Wrong email or password.');
    expect(await page.evaluate(focusedId)).toBe('login-button');
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

  it('hides the last upload\'s full progress bar and thumbnail when the next one cannot start', async () => {
    expect(await page.locator('#upload-progress-row').evaluate(isHidden)).toBe(false);
    await page.getByLabel('Gallery name').fill('not a name!');
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.locator('#upload-message').textContent()).toContain('The gallery name may use');
    expect(await page.locator('#upload-progress-row').evaluate(isHidden)).toBe(true);
    expect(await page.locator('#upload-figure').evaluate(isHidden)).toBe(true);
    await page.getByLabel('Gallery name').fill('shop-window');
  });

  it('says so when a file is not an image', async () => {
    await page.getByLabel(/^Photo/).setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('just some text, not a photo') });
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.locator('#upload-message').textContent()).toContain('not an image Kiln accepts');
    // The bytes all went out, but nothing was uploaded: no full bar beside the error.
    expect(await page.locator('#upload-progress-row').evaluate(isHidden)).toBe(true);
  });

  it('leaves the keyboard focus on "Upload" once the upload is answered', async () => {
    await pressAndWait(page, 'upload-button', 'Space', '/projects/shop-window/images');
    expect(await page.locator('#upload-message').textContent()).toContain('not an image Kiln accepts');
    expect(await page.evaluate(focusedId)).toBe('upload-button');
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

  it('leaves the keyboard focus on "Fetch picture" once the request is answered', async () => {
    await pressAndWait(page, 'fetch-button', 'Enter', '/api/v1/fetch-image');
    expect(await page.locator('#barcode-message').textContent()).toContain('not a valid barcode');
    expect(await page.evaluate(focusedId)).toBe('fetch-button');
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

  it('wraps a long product name without spaces on a phone, rather than widening the page', async () => {
    // The product database allows names of up to 500 characters; this one has nowhere to wrap.
    const name = 'Extralongproductnamewithoutanyspaces'.repeat(5);
    const code = ean13(180);
    provider.products.set(code, { kind: 'ok', name, image: '/img/rocket.jpg' });
    const phone = await browser.newPage({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
    try {
      await phone.goto(`${server.url}/upload`);
      await signIn(phone, user);
      await phone.getByLabel(/^Barcode/).fill(code);
      await phone.getByRole('button', { name: 'Fetch picture' }).click();
      await expect.poll(() => phone.locator('#barcode-message').textContent(), { timeout: 10_000 }).toBe('Picture fetched.');
      expect(await phone.locator('#product-caption').textContent()).toContain(name);
      expect(await phone.evaluate(pageWidth)).toBeLessThanOrEqual(375);
    } finally {
      await phone.close();
    }
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

  it('still says an upload succeeded when only its thumbnail cannot be loaded, so that nobody sends it twice', async () => {
    const thumbs = (url: URL) => url.pathname.startsWith('/projects/') && url.searchParams.get('size') === 'thumb';
    const refuse = (route: Route) => route.fulfill(RATE_LIMITED);
    await page.route(thumbs, refuse);
    try {
      await page.getByLabel('Gallery name').fill('thumbless');
      await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg'));
      await page.getByRole('button', { name: 'Upload' }).click();
      await expect.poll(() => page.locator('#upload-thumb-message').textContent()).not.toBe('');
    } finally {
      await page.unroute(thumbs, refuse);
    }
    expect(await page.locator('#upload-message').textContent()).toBe('Uploaded: 2560 × 1600 pixels.');
    expect(await page.locator('#upload-thumb-message').textContent()).toBe('Thumbnail not shown: Too many attempts; wait a minute and try again.');
    expect(await page.locator('#upload-figure').evaluate(isHidden)).toBe(true);
    const listing = (await (await fetch(`${server.url}/projects/thumbless/images`)).json()) as { images: unknown[] };
    expect(listing.images).toHaveLength(1);
  });

  it('still says a picture was fetched when only showing it fails', async () => {
    const pictures = (url: URL) => /^\/api\/v1\/images\/[0-9]+\/file$/.test(url.pathname);
    const refuse = (route: Route) => route.fulfill(RATE_LIMITED);
    await page.route(pictures, refuse);
    try {
      await page.getByLabel(/^Barcode/).fill('3017620422003');
      await page.getByRole('button', { name: 'Fetch picture' }).click();
      await expect.poll(() => page.locator('#product-image-message').textContent(), { timeout: 10_000 }).not.toBe('');
    } finally {
      await page.unroute(pictures, refuse);
    }
    expect(await page.locator('#barcode-message').textContent()).toBe('Picture fetched.');
    expect(await page.locator('#product-image-message').textContent()).toBe('Picture not shown: Too many attempts; wait a minute and try again.');
    expect(await page.locator('#product-figure').evaluate(isHidden)).toBe(true);
  });

  it('signing out clears the pictures and messages, disables the forms and moves the focus to the email field', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#login-form').waitFor({ state: 'visible' });
    expect(await page.locator('#upload-figure').isHidden()).toBe(true);
    expect(await page.locator('#product-figure').isHidden()).toBe(true);
    expect(await page.locator('#product-image').getAttribute('src')).toBeNull();
    expect(await page.locator('#product-caption').textContent()).toBe('');
    expect(await page.locator('#upload-message').textContent()).toBe('');
    expect(await page.locator('#barcode-message').textContent()).toBe('');
    expect(await page.locator('#upload-thumb-message').textContent()).toBe('');
    expect(await page.locator('#product-image-message').textContent()).toBe('');
    expect(await page.locator('#job-status').textContent()).toBe('none yet');
    expect(await page.locator('#project').evaluate(isDisabledControl)).toBe(true);
    expect(await page.evaluate(focusedId)).toBe('email');
  });

  it('signing out stops an upload under way: nothing of it shows afterwards', async () => {
    await signIn(page, user);
    const uploads = (url: URL) => url.pathname === '/projects/interrupted/images';
    // The upload is held until the person has signed out, then let go: it reaches Kiln unless the page cancelled it.
    let reached!: () => void;
    const held = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const hold = async (route: Route) => {
      reached();
      await gate;
      await route.continue().catch(() => {}); // cancelled meanwhile: nothing to let go
    };
    await page.route(uploads, hold);
    // Answered, or cancelled.
    let over!: () => void;
    const ended = new Promise<void>((resolve) => (over = resolve));
    const done = (request: Request) => {
      if (uploads(new URL(request.url()))) over();
    };
    page.on('requestfinished', done);
    page.on('requestfailed', done);
    try {
      await page.getByLabel('Gallery name').fill('interrupted');
      await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg'));
      await page.getByRole('button', { name: 'Upload' }).click();
      await held;
      await page.getByRole('button', { name: 'Sign out' }).click();
      release();
      await ended;
      // Time for an answer that got through to be shown, and its thumbnail asked for.
      await page.waitForTimeout(1000);
    } finally {
      page.off('requestfinished', done);
      page.off('requestfailed', done);
      await page.unroute(uploads, hold);
    }
    expect(await page.locator('#login-form').isVisible()).toBe(true);
    expect(await page.locator('#upload-message').textContent()).toBe('');
    expect(await page.locator('#upload-thumb-message').textContent()).toBe('');
    expect(await page.locator('#upload-progress-row').evaluate(isHidden)).toBe(true);
    expect(await page.locator('#upload-figure').evaluate(isHidden)).toBe(true);
    expect(await page.locator('#upload-thumb').getAttribute('src')).toBeNull();
    expect(await page.locator('#upload-caption').textContent()).toBe('');
  });

  it('signing out stops watching a job: no message about it afterwards', async () => {
    await signIn(page, user);
    const code = ean13(181);
    provider.products.set(code, { kind: 'slow', delayMs: 2000, name: 'Slow biscuits', image: '/img/rocket.jpg' });
    const polls: string[] = [];
    const onRequest = (request: Request) => {
      if (new URL(request.url()).pathname.startsWith('/api/v1/jobs/')) polls.push(request.url());
    };
    await page.getByLabel(/^Barcode/).fill(code);
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#job-status').textContent()).toMatch(/^(queued|processing)$/);
    await page.getByRole('button', { name: 'Sign out' }).click();
    page.on('request', onRequest);
    try {
      // Longer than the page waits between two looks at a job this young (0.5 s, then 0.75 s).
      await page.waitForTimeout(1500);
    } finally {
      page.off('request', onRequest);
    }
    expect(polls).toEqual([]);
    expect(await page.locator('#barcode-message').textContent()).toBe('');
    expect(await page.locator('#job-status').textContent()).toBe('none yet');
    expect(await page.locator('#login-message').textContent()).toBe('Signed out.');
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

  beforeAll(async () => {
    // The server's clock moves; the browser's does not, as when a tab stays open past ACCESS_TOKEN_LIFETIME.
    server = await startServer({}, { clock });
    user = await registerUser(server.url);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    page = await browser.newPage();
    await page.goto(`${server.url}/upload`);
    await signIn(page, user);
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

  it('stays signed in when the renewal is rate-limited, and says how long to wait', async () => {
    await signIn(page, user);
    const refreshToken = await page.evaluate(stored, 'kiln.refresh_token');
    clock.advanceMinutes(16);
    const logouts: string[] = [];
    const onRequest = (request: Request) => {
      if (new URL(request.url()).pathname === '/auth/logout') logouts.push(request.url());
    };
    const refuse = (route: Route) => route.fulfill(RATE_LIMITED);
    page.on('request', onRequest);
    await page.route('**/auth/refresh', refuse);
    const waitSentence = 'Your session could not be renewed just now: too many attempts. Wait 42 seconds and try again; you are still signed in.';
    try {
      await page.getByLabel(/^Barcode/).fill('4006381333932');
      await pressAndWait(page, 'fetch-button', 'Enter', '/auth/refresh');
      expect(await page.locator('#barcode-message').textContent()).toBe(waitSentence);
      // The upload, sent by XMLHttpRequest, meets the same 401 and the same refused renewal.
      await page.getByLabel('Gallery name').fill('later');
      await page.getByLabel(/^Photo/).setInputFiles(path.join(FIXTURES, 'path_2560x1600_olympus_exif.jpg'));
      await pressAndWait(page, 'upload-button', 'Enter', '/auth/refresh');
      expect(await page.locator('#upload-message').textContent()).toBe(waitSentence);
      expect(await page.locator('#upload-progress-row').evaluate(isHidden)).toBe(true);
    } finally {
      await page.unroute('**/auth/refresh', refuse);
      page.off('request', onRequest);
    }
    expect(await page.locator('#signed-in').isVisible()).toBe(true);
    expect(await page.evaluate(stored, 'kiln.refresh_token')).toBe(refreshToken);
    expect(logouts).toEqual([]);
    // Trying again once the limit has passed just works.
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#barcode-message').textContent()).toContain('not a valid barcode');
    expect(await page.evaluate(stored, 'kiln.refresh_token')).not.toBe(refreshToken);
  });

  it("says a watched job's status is not known yet, or may be old, while the job route is rate limited, and goes on once it is not", async () => {
    // The job stays queued (this server runs no jobs): the page looks at it again and again.
    const refuse = (route: Route) => route.fulfill({ ...RATE_LIMITED, headers: { 'retry-after': '2' } });
    const status = page.locator('#job-status');
    await page.route('**/api/v1/jobs/*', refuse);
    try {
      await page.getByLabel(/^Barcode/).fill(ean13(183));
      await page.getByRole('button', { name: 'Fetch picture' }).click();
      await expect.poll(() => status.textContent(), { timeout: 10_000 }).toBe('not known yet (too many requests: looking again in 2 s)');
    } finally {
      await page.unroute('**/api/v1/jobs/*', refuse);
    }
    await expect.poll(() => status.textContent(), { timeout: 10_000 }).toBe('queued');
    await page.route('**/api/v1/jobs/*', refuse);
    try {
      await expect.poll(() => status.textContent(), { timeout: 10_000 }).toBe('queued, as last seen (too many requests: looking again in 2 s)');
    } finally {
      await page.unroute('**/api/v1/jobs/*', refuse);
    }
    await expect.poll(() => status.textContent(), { timeout: 10_000 }).toBe('queued');
  });

  it('stays signed in when Kiln cannot be reached to renew the session', async () => {
    clock.advanceMinutes(16);
    const cut = (route: Route) => route.abort('internetdisconnected');
    await page.route('**/auth/refresh', cut);
    try {
      await page.getByLabel(/^Barcode/).fill('4006381333932');
      await page.getByRole('button', { name: 'Fetch picture' }).click();
      await expect
        .poll(() => page.locator('#barcode-message').textContent())
        .toBe('Kiln could not be reached to renew your session. Check your connection and try again; you are still signed in.');
    } finally {
      await page.unroute('**/auth/refresh', cut);
    }
    expect(await page.locator('#signed-in').isVisible()).toBe(true);
    expect(await page.evaluate(stored, 'kiln.refresh_token')).toBeTruthy();
  });

  it('once the session has ended, shows the sign-in prompt, not the server\'s 401 message', async () => {
    clock.advanceMinutes(61); // past SHORT_REFRESH_TOKEN_LIFETIME
    await page.getByLabel(/^Barcode/).fill('4006381333932');
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#login-message').textContent()).toBe('Your session has ended; sign in again.');
    // Time for the refused request's own answer to be written, had the page kept it.
    await page.waitForTimeout(500);
    expect(await page.locator('#barcode-message').textContent()).toBe('');
    expect(await page.locator('#job-status').textContent()).toBe('none yet');
  });

  it('once the session has ended while a job is watched, shows the sign-in prompt, not the server\'s 401 message', async () => {
    await signIn(page, user);
    // The job stays queued (this server runs no jobs): the page looks at it again and again.
    await page.getByLabel(/^Barcode/).fill(ean13(182));
    await page.getByRole('button', { name: 'Fetch picture' }).click();
    await expect.poll(() => page.locator('#job-status').textContent()).toBe('queued');
    clock.advanceMinutes(61);
    await expect.poll(() => page.locator('#login-message').textContent(), { timeout: 10_000 }).toBe('Your session has ended; sign in again.');
    await page.waitForTimeout(500);
    expect(await page.locator('#barcode-message').textContent()).toBe('');
    expect(await page.locator('#job-status').textContent()).toBe('none yet');
  });

  it('signs out, saying so, once the refresh token has run out too', async () => {
    await signIn(page, user);
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
