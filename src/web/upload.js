// The upload page's behaviour: sign in, upload a photo with a progress bar,
// fetch a product picture by barcode and watch its job. Plain browser
// JavaScript served by Kiln itself (the page's CSP allows only its own
// scripts), talking to the same JSON API any client uses.

const TOKEN_KEY = 'kiln.access_token';
const REFRESH_KEY = 'kiln.refresh_token';
const EMAIL_KEY = 'kiln.email';
/** A job is looked at after 0.5 s, then less and less often, up to every 4 s: a long job stays well inside the rate limit. */
const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 4000;
const UNREACHABLE = 'Kiln could not be reached. Check your connection.';

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;

/** Sentences a person can act on, by the API's stable error codes. */
const MESSAGES = {
  invalid_credentials: 'Wrong email or password.',
  account_inactive: 'This account is deactivated.',
  rate_limited: 'Too many attempts; wait a minute and try again.',
  invalid_ean: 'That is not a valid barcode. Check the digits: the last one is a check digit.',
  unsupported_image: 'That file is not an image Kiln accepts (JPEG, PNG, WebP or AVIF).',
  empty_file: 'That file is empty.',
  corrupt_image: 'That image is damaged and cannot be read.',
  file_too_large: 'That file is larger than the upload limit.',
  image_too_large: 'That image is too large (in bytes or in pixels).',
  project_not_found: 'That gallery belongs to someone else; choose another name.',
  not_found: 'The product database has no product with this barcode.',
  no_image: 'The product database has no picture of this product.',
  not_an_image: 'The product database’s picture is not an image Kiln accepts.',
  source_unreachable: 'The product database could not be reached; try again later.',
  source_blocked: 'The product picture is on an address Kiln may not fetch from.',
  timeout: 'The product database took too long to answer; try again later.',
};

/** An HEIC photo the server read but cannot decode (HEVC, as iPhones write): its own sentence, with what to do. */
const HEIC_UNDECODABLE = 'That is an HEIC photo, which this server cannot decode. Send it as JPEG (on an iPhone: Settings, Camera, Formats, Most Compatible).';

function describe(problem, fallback) {
  if (problem && problem.code === 'unsupported_image' && typeof problem.detail === 'string' && problem.detail.startsWith('This HEIC/HEIF image')) return HEIC_UNDECODABLE;
  if (problem && MESSAGES[problem.code]) return MESSAGES[problem.code];
  if (problem && typeof problem.detail === 'string') return problem.detail;
  return fallback;
}

function say(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.className = `message${kind ? ` ${kind}` : ''}`;
}

function token() {
  return store.getItem(TOKEN_KEY);
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null; // an empty or non-JSON body: the caller falls back to its own message
  }
}

function keepSession(pair) {
  store.setItem(TOKEN_KEY, pair.access_token);
  store.setItem(REFRESH_KEY, pair.refresh_token);
}

let renewing = null;

/**
 * A new access token for the refresh token the page holds; true when it got
 * one. Refresh tokens rotate and a used one presented again ends the whole
 * session, so requests that meet a 401 together share one renewal.
 */
function renew() {
  renewing ??= (async () => {
    const refreshToken = store.getItem(REFRESH_KEY);
    if (!refreshToken) return false;
    try {
      const response = await fetch('/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: refreshToken }),
      });
      if (!response.ok) return false;
      keepSession(await response.json());
      return true;
    } catch {
      return false;
    }
  })().finally(() => {
    renewing = null;
  });
  return renewing;
}

/** The session could not be renewed: the page signs out and says why. */
function sessionEnded() {
  signOut();
  say('login-message', 'Your session has ended; sign in again.', 'error');
}

/**
 * fetch with the bearer token. A 401 means the access token ran out (after
 * ACCESS_TOKEN_LIFETIME minutes) or was ended: the page renews it once and
 * asks again, and signs out when it cannot.
 */
async function api(path, options = {}) {
  const send = () => {
    const headers = { ...(options.headers || {}) };
    if (token()) headers.authorization = `Bearer ${token()}`;
    return fetch(path, { ...options, headers });
  };
  const signedIn = Boolean(token());
  let response = await send();
  if (response.status === 401 && signedIn) {
    if (await renew()) response = await send();
    if (response.status === 401) sessionEnded();
  }
  return response;
}

/** Loads an image that needs the bearer token into an <img> through a blob URL. */
async function showImage(img, path) {
  const response = await api(path);
  if (!response.ok) throw new Error(describe(await readJson(response), `The picture could not be loaded (${response.status}).`));
  const old = img.dataset.blobUrl;
  const url = URL.createObjectURL(await response.blob());
  img.dataset.blobUrl = url;
  img.src = url;
  if (old) URL.revokeObjectURL(old);
}

function setSignedIn(email) {
  const on = Boolean(token());
  $('login-form').hidden = on;
  $('signed-in').hidden = !on;
  $('signed-in-as').textContent = on ? email || '' : '';
  // Signed out, the two forms' controls are disabled: not focusable, and announced as such.
  for (const control of document.querySelectorAll('#upload-form input, #upload-form button, #barcode-form input, #barcode-form button')) control.disabled = !on;
  $('upload').setAttribute('aria-disabled', String(!on));
  $('barcode').setAttribute('aria-disabled', String(!on));
}

/** Hides a figure and lets go of its picture. */
function clearFigure(figureId, imgId) {
  $(figureId).hidden = true;
  const img = $(imgId);
  if (img.dataset.blobUrl) URL.revokeObjectURL(img.dataset.blobUrl);
  delete img.dataset.blobUrl;
  img.removeAttribute('src');
}

/**
 * Forgets the session and everything the page showed of it (a shared screen
 * shows nothing of the last user). The server is told too, so the refresh
 * token stops working even if a copy of it survived somewhere.
 */
function signOut() {
  const refreshToken = store.getItem(REFRESH_KEY);
  if (refreshToken) {
    // keepalive: the request goes out even when the tab is being closed. An unreachable server changes nothing here.
    fetch('/auth/logout', { method: 'POST', keepalive: true, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: refreshToken }) }).catch(() => {});
  }
  store.removeItem(TOKEN_KEY);
  store.removeItem(REFRESH_KEY);
  store.removeItem(EMAIL_KEY);
  clearFigure('upload-figure', 'upload-thumb');
  clearFigure('product-figure', 'product-image');
  $('upload-progress-row').hidden = true;
  say('upload-message', '');
  say('barcode-message', '');
  $('job-status').textContent = 'none yet';
  setSignedIn(null);
  $('email').focus();
}

async function login(event) {
  event.preventDefault();
  const email = $('email').value.trim();
  const password = $('password').value;
  if (!email || !password) {
    say('login-message', 'Enter your email and password.', 'error');
    return;
  }
  $('login-button').disabled = true;
  say('login-message', 'Signing in…');
  try {
    const response = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    const body = await readJson(response);
    if (!response.ok) {
      say('login-message', describe(body, `Sign-in failed (${response.status}).`), 'error');
      return;
    }
    keepSession(body);
    store.setItem(EMAIL_KEY, email);
    $('password').value = '';
    setSignedIn(email);
    say('login-message', 'Signed in.', 'ok');
    // The form that had the focus is hidden now: the first field of what the page is for takes it.
    $('project').focus();
  } catch {
    say('login-message', UNREACHABLE, 'error');
  } finally {
    $('login-button').disabled = false;
  }
}

function upload(event) {
  event.preventDefault();
  const project = $('project').value.trim();
  const file = $('photo').files[0];
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(project)) return say('upload-message', 'The gallery name may use letters, digits, “_” and “-” (up to 64).', 'error');
  if (!file) return say('upload-message', 'Choose a photo first.', 'error');
  sendPhoto(project, file, true);
}

/** Sends the photo by XMLHttpRequest (fetch reports no upload progress); after a 401, once more with a renewed token. */
function sendPhoto(project, file, mayRenew) {
  const form = new FormData();
  form.append('file', file, file.name);
  const xhr = new XMLHttpRequest();
  const bar = $('upload-progress');
  bar.value = 0;
  bar.textContent = '0%';
  $('upload-progress-row').hidden = false;
  $('upload-figure').hidden = true;
  $('upload-button').disabled = true;
  say('upload-message', `Uploading ${file.name}…`);

  xhr.upload.addEventListener('progress', (e) => {
    if (!e.lengthComputable) return;
    const pct = Math.round((e.loaded / e.total) * 100);
    bar.value = pct;
    bar.textContent = `${pct}%`;
  });
  xhr.addEventListener('load', async () => {
    $('upload-button').disabled = false;
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      body = null; // not JSON: described by status below
    }
    if (xhr.status === 401) {
      if (mayRenew && (await renew())) return sendPhoto(project, file, false);
      return sessionEnded();
    }
    if (xhr.status !== 201) return say('upload-message', describe(body, `The upload failed (${xhr.status}).`), 'error');
    bar.value = 100;
    say('upload-message', `Uploaded: ${body.width} × ${body.height} pixels.`, 'ok');
    try {
      await showImage($('upload-thumb'), body.urls.thumb);
      $('upload-caption').textContent = `${file.name} in gallery “${project}”`;
      $('upload-figure').hidden = false;
    } catch (err) {
      say('upload-message', err.message, 'error');
    }
  });
  xhr.addEventListener('error', () => {
    $('upload-button').disabled = false;
    say('upload-message', 'The upload was interrupted. Check your connection and try again.', 'error');
  });
  xhr.open('POST', `/projects/${encodeURIComponent(project)}/images`);
  xhr.setRequestHeader('authorization', `Bearer ${token()}`);
  xhr.send(form);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function watchJob(jobId) {
  let wait = POLL_FIRST_MS;
  for (;;) {
    const response = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
    const job = await readJson(response);
    if (response.status === 429) {
      // Rate limited: the job goes on regardless; look again when the server says.
      await sleep(Math.max(1, Number(response.headers.get('retry-after')) || 5) * 1000);
      continue;
    }
    if (!response.ok) throw new Error(describe(job, `The job could not be read (${response.status}).`));
    const retry = job.status === 'queued' && job.attempts > 0 ? ` (attempt ${job.attempts + 1} of ${job.max_attempts} soon)` : '';
    $('job-status').textContent = `${job.status}${retry}`;
    if (job.status === 'completed' || job.status === 'failed' || job.status === 'cancelled') return job;
    await sleep(wait);
    wait = Math.min(POLL_MAX_MS, Math.round(wait * 1.5));
  }
}

async function fetchProduct(event) {
  event.preventDefault();
  const raw = $('ean').value.trim();
  if (!raw) return say('barcode-message', 'Type a barcode first.', 'error');
  $('fetch-button').disabled = true;
  $('product-figure').hidden = true;
  say('barcode-message', '');
  try {
    const response = await api('/api/v1/fetch-image', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ean_code: raw }),
    });
    const body = await readJson(response);
    if (response.status !== 202) {
      $('job-status').textContent = 'not started';
      return say('barcode-message', describe(body, `The request failed (${response.status}).`), 'error');
    }
    $('job-status').textContent = body.status;
    const job = await watchJob(body.job_id);
    if (job.status !== 'completed') return say('barcode-message', describe(job.error, 'The picture could not be fetched.'), 'error');
    const name = job.result && job.result.product_name;
    const img = $('product-image');
    img.alt = name ? `Picture of ${name}` : `Product picture for barcode ${body.ean_code}`;
    await showImage(img, `/api/v1/images/${encodeURIComponent(body.ean_code)}/file?size=thumb`);
    $('product-caption').textContent = `${name || 'Unnamed product'} (barcode ${body.ean_code})`;
    $('product-figure').hidden = false;
    say('barcode-message', 'Picture fetched.', 'ok');
  } catch (err) {
    // fetch's own TypeError ("Failed to fetch") means the server could not be reached.
    const text = err instanceof TypeError ? UNREACHABLE : err instanceof Error && err.message ? err.message : 'Something went wrong.';
    say('barcode-message', text, 'error');
  } finally {
    $('fetch-button').disabled = !token();
  }
}

$('login-form').addEventListener('submit', login);
$('logout-button').addEventListener('click', () => {
  signOut();
  say('login-message', 'Signed out.', 'ok');
});
$('upload-form').addEventListener('submit', upload);
$('barcode-form').addEventListener('submit', fetchProduct);
setSignedIn(store.getItem(EMAIL_KEY));
