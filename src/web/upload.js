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

/** The sentence for an error thrown on the way: fetch's own TypeError ("Failed to fetch") means the server could not be reached. */
function explain(err) {
  if (err instanceof TypeError) return UNREACHABLE;
  return err instanceof Error && err.message ? err.message : 'Something went wrong.';
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

/**
 * The session the page is in. Signing out aborts it and starts the next one:
 * the requests still under way are cancelled, and work begun in the session
 * (an upload, a job being watched, a renewal) takes its signal at the start
 * and checks it before every write to the page. So nothing of a session that
 * is over shows up later on the signed-out page (or in the next session): no
 * late "Uploaded", no thumbnail, no 401 message meant for the forgotten token.
 */
let session = new AbortController();

/** What work rejects with when its session ended; callers see their signal aborted and write nothing. */
const ended = () => new Error('The session has ended.');

/** Waits `ms`, or rejects as soon as the session of `signal` ends. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(ended());
    const stop = () => {
      clearTimeout(timer);
      reject(ended());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', stop);
      resolve();
    }, ms);
    signal.addEventListener('abort', stop, { once: true });
  });
}

/** "30 seconds", from a 429's Retry-After (a minute when it has none). */
function waitFor(response) {
  const seconds = Math.max(1, Math.ceil(Number(response.headers.get('retry-after')) || 60));
  return seconds === 1 ? 'a second' : `${seconds} seconds`;
}

let renewing = null;

/**
 * A new access token for the refresh token the page holds. Refresh tokens
 * rotate and a used one presented again ends the whole session, so requests
 * that meet a 401 together share one renewal.
 *
 * Resolves once the page holds the new pair. Only a 401 from /auth/refresh
 * (the refresh token ran out, was ended or was reused: docs/auth.md; the
 * route answers nothing else for a refused token) ends the session: the page
 * signs out, says so, and the promise rejects. Anything else (a 429, a server
 * error, no connection) leaves the refresh token as good as it was: the page
 * stays signed in and rejects with a sentence saying what to do, and the
 * person tries again. Signing out there would throw away a valid session, and
 * the /auth/logout it sends would likely be rate-limited too.
 */
function renew() {
  if (!renewing) {
    const attempt = renewOnce().finally(() => {
      // Sign-out forgets a renewal under way: a later one is not this one's to clear.
      if (renewing === attempt) renewing = null;
    });
    renewing = attempt;
  }
  return renewing;
}

async function renewOnce() {
  const { signal } = session;
  const refreshToken = store.getItem(REFRESH_KEY);
  if (!refreshToken) {
    sessionEnded();
    throw ended();
  }
  let response;
  try {
    response = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: refreshToken }),
      signal,
    });
  } catch {
    if (signal.aborted) throw ended();
    throw new Error('Kiln could not be reached to renew your session. Check your connection and try again; you are still signed in.');
  }
  const body = await readJson(response);
  // Signed out meanwhile: this pair belongs to a session that is over, and must not become the next one's.
  if (signal.aborted) throw ended();
  if (response.status === 401) {
    sessionEnded();
    throw ended();
  }
  if (response.status === 429) throw new Error(`Your session could not be renewed just now: too many attempts. Wait ${waitFor(response)} and try again; you are still signed in.`);
  if (!response.ok || !body) throw new Error(`Your session could not be renewed just now (the server answered ${response.status}). Try again in a moment; you are still signed in.`);
  keepSession(body);
}

/** The session could not be renewed: the page signs out and says why. */
function sessionEnded() {
  signOut();
  say('login-message', 'Your session has ended; sign in again.', 'error');
}

/**
 * fetch with the bearer token, in the session of `signal`. A 401 means the
 * access token ran out (after ACCESS_TOKEN_LIFETIME minutes) or was ended:
 * the page renews it once and asks again. Rejects when the session ended on
 * the way (the page has signed out and said so; the server's 401 is not for
 * the person to see) or when the renewal could not be made (with the
 * sentence to show).
 */
async function api(path, signal, options = {}) {
  const send = () => {
    const headers = { ...(options.headers || {}) };
    if (token()) headers.authorization = `Bearer ${token()}`;
    return fetch(path, { ...options, headers, signal });
  };
  const signedIn = Boolean(token());
  let response = await send();
  if (response.status === 401 && signedIn) {
    await renew();
    response = await send();
    if (response.status === 401) {
      sessionEnded();
      throw ended();
    }
  }
  return response;
}

/** Loads an image that needs the bearer token into an <img> through a blob URL. */
async function showImage(img, path, signal) {
  const response = await api(path, signal);
  if (!response.ok) throw new Error(describe(await readJson(response), `The picture could not be loaded (${response.status}).`));
  const blob = await response.blob();
  if (signal.aborted) throw ended();
  const old = img.dataset.blobUrl;
  const url = URL.createObjectURL(blob);
  img.dataset.blobUrl = url;
  img.src = url;
  if (old) URL.revokeObjectURL(old);
}

/**
 * Marks a button busy while its request runs. It stays enabled and focused:
 * a disabled button loses the keyboard focus to <body>. aria-disabled tells
 * assistive technology it does nothing for now, and the form's handler
 * ignores presses (and Enter in a field) while it is set.
 */
function setBusy(button, busy) {
  if (busy) button.setAttribute('aria-disabled', 'true');
  else button.removeAttribute('aria-disabled');
}

const isBusy = (button) => button.getAttribute('aria-disabled') === 'true';

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

/** Hides a figure, empties its caption and lets go of its picture. */
function clearFigure(figureId, imgId) {
  $(figureId).hidden = true;
  $(figureId).querySelector('figcaption').textContent = '';
  const img = $(imgId);
  if (img.dataset.blobUrl) URL.revokeObjectURL(img.dataset.blobUrl);
  delete img.dataset.blobUrl;
  img.removeAttribute('src');
}

/** Hides what the last upload left (progress bar, thumbnail, thumbnail note): before the next one, or when it cannot start. */
function clearUploadResult() {
  $('upload-progress-row').hidden = true;
  clearFigure('upload-figure', 'upload-thumb');
  say('upload-thumb-message', '');
}

/**
 * Forgets the session and everything the page showed of it (a shared screen
 * shows nothing of the last user), and stops the work still under way in it.
 * The server is told too, so the refresh token stops working even if a copy
 * of it survived somewhere.
 */
function signOut() {
  session.abort();
  session = new AbortController();
  renewing = null;
  const refreshToken = store.getItem(REFRESH_KEY);
  if (refreshToken) {
    // keepalive: the request goes out even when the tab is being closed. An unreachable server changes nothing here.
    fetch('/auth/logout', { method: 'POST', keepalive: true, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: refreshToken }) }).catch(() => {});
  }
  store.removeItem(TOKEN_KEY);
  store.removeItem(REFRESH_KEY);
  store.removeItem(EMAIL_KEY);
  clearUploadResult();
  clearFigure('product-figure', 'product-image');
  $('product-image').alt = ''; // it names the last product
  say('upload-message', '');
  say('barcode-message', '');
  say('product-image-message', '');
  $('job-status').textContent = 'none yet';
  setBusy($('upload-button'), false);
  setBusy($('fetch-button'), false);
  setSignedIn(null);
  $('email').focus();
}

async function login(event) {
  event.preventDefault();
  const button = $('login-button');
  if (isBusy(button)) return;
  const email = $('email').value.trim();
  const password = $('password').value;
  if (!email || !password) {
    say('login-message', 'Enter your email and password.', 'error');
    return;
  }
  setBusy(button, true);
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
    setBusy(button, false);
  }
}

function upload(event) {
  event.preventDefault();
  if (isBusy($('upload-button'))) return;
  const project = $('project').value.trim();
  const file = $('photo').files[0];
  let problem = null;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(project)) problem = 'The gallery name may use letters, digits, “_” and “-” (up to 64).';
  else if (!file) problem = 'Choose a photo first.';
  if (problem) {
    // The last upload's full progress bar and thumbnail would sit beside this error as if they were its outcome.
    clearUploadResult();
    return say('upload-message', problem, 'error');
  }
  sendPhoto(project, file, session.signal, true);
}

/**
 * Sends the photo by XMLHttpRequest (fetch reports no upload progress); after
 * a 401, once more with a renewed token. `signal` is the session's: signing
 * out aborts the request, and nothing here writes to the page after that.
 */
function sendPhoto(project, file, signal, mayRenew) {
  const form = new FormData();
  form.append('file', file, file.name);
  const xhr = new XMLHttpRequest();
  const button = $('upload-button');
  const bar = $('upload-progress');
  clearUploadResult();
  bar.value = 0;
  bar.textContent = '0%';
  $('upload-progress-row').hidden = false;
  setBusy(button, true);
  say('upload-message', `Uploading ${file.name}…`);

  const cancel = () => xhr.abort(); // fires neither 'load' nor 'error'
  signal.addEventListener('abort', cancel, { once: true });
  /** The upload could not be made: the bar goes, the error stays. */
  const failed = (text) => {
    setBusy(button, false);
    $('upload-progress-row').hidden = true;
    say('upload-message', text, 'error');
  };

  xhr.upload.addEventListener('progress', (e) => {
    if (signal.aborted || !e.lengthComputable) return;
    const pct = Math.round((e.loaded / e.total) * 100);
    bar.value = pct;
    bar.textContent = `${pct}%`;
  });
  xhr.addEventListener('load', async () => {
    signal.removeEventListener('abort', cancel);
    if (signal.aborted) return;
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      body = null; // not JSON: described by status below
    }
    if (xhr.status === 401) {
      if (!mayRenew) return sessionEnded();
      try {
        await renew();
      } catch (err) {
        if (!signal.aborted) failed(explain(err));
        return;
      }
      return sendPhoto(project, file, signal, false);
    }
    if (xhr.status !== 201) return failed(describe(body, `The upload failed (${xhr.status}).`));
    setBusy(button, false);
    bar.value = 100;
    say('upload-message', `Uploaded: ${body.width} × ${body.height} pixels.`, 'ok');
    try {
      await showImage($('upload-thumb'), body.urls.thumb, signal);
      $('upload-caption').textContent = `${file.name} in gallery “${project}”`;
      $('upload-figure').hidden = false;
    } catch (err) {
      // The photo is uploaded all the same: the message above stays, so that nobody sends it twice.
      if (!signal.aborted) say('upload-thumb-message', `Thumbnail not shown: ${explain(err)}`, 'error');
    }
  });
  xhr.addEventListener('error', () => {
    signal.removeEventListener('abort', cancel);
    if (signal.aborted) return;
    failed('The upload was interrupted. Check your connection and try again.');
  });
  xhr.open('POST', `/projects/${encodeURIComponent(project)}/images`);
  xhr.setRequestHeader('authorization', `Bearer ${token()}`);
  xhr.send(form);
}

async function watchJob(jobId, signal) {
  let wait = POLL_FIRST_MS;
  let seen;
  for (;;) {
    const response = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}`, signal);
    const job = await readJson(response);
    if (signal.aborted) throw ended();
    if (response.status === 429) {
      // Rate limited: the job goes on regardless; look again when the server says, and say that the status shown may be old.
      const seconds = Math.max(1, Number(response.headers.get('retry-after')) || 5);
      const shown = seen === undefined ? 'not known yet' : `${seen}, as last seen`;
      $('job-status').textContent = `${shown} (too many requests: looking again in ${seconds} s)`;
      await sleep(seconds * 1000, signal);
      continue;
    }
    if (!response.ok) throw new Error(describe(job, `The job could not be read (${response.status}).`));
    const retry = job.status === 'queued' && job.attempts > 0 ? ` (attempt ${job.attempts + 1} of ${job.max_attempts} soon)` : '';
    seen = `${job.status}${retry}`;
    $('job-status').textContent = seen;
    if (job.status === 'completed' || job.status === 'failed' || job.status === 'cancelled') return job;
    await sleep(wait, signal);
    wait = Math.min(POLL_MAX_MS, Math.round(wait * 1.5));
  }
}

async function fetchProduct(event) {
  event.preventDefault();
  const button = $('fetch-button');
  if (isBusy(button)) return;
  const raw = $('ean').value.trim();
  if (!raw) return say('barcode-message', 'Type a barcode first.', 'error');
  const { signal } = session;
  setBusy(button, true);
  clearFigure('product-figure', 'product-image');
  say('barcode-message', '');
  say('product-image-message', '');
  try {
    const response = await api('/api/v1/fetch-image', signal, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ean_code: raw }),
    });
    const body = await readJson(response);
    if (signal.aborted) return;
    if (response.status !== 202) {
      $('job-status').textContent = 'not started';
      return say('barcode-message', describe(body, `The request failed (${response.status}).`), 'error');
    }
    $('job-status').textContent = body.status;
    const job = await watchJob(body.job_id, signal);
    if (job.status !== 'completed') return say('barcode-message', describe(job.error, 'The picture could not be fetched.'), 'error');
    const name = job.result && job.result.product_name;
    const img = $('product-image');
    img.alt = name ? `Picture of ${name}` : `Product picture for barcode ${body.ean_code}`;
    try {
      await showImage(img, `/api/v1/images/${encodeURIComponent(body.ean_code)}/file?size=thumb`, signal);
      $('product-caption').textContent = `${name || 'Unnamed product'} (barcode ${body.ean_code})`;
      $('product-figure').hidden = false;
    } catch (err) {
      if (signal.aborted) return;
      // Kiln has the picture; only showing it failed. Said apart from the job's outcome, which was a success.
      say('product-image-message', `Picture not shown: ${explain(err)}`, 'error');
    }
    say('barcode-message', 'Picture fetched.', 'ok');
  } catch (err) {
    // Once the session has ended the page has signed out and said so: the server's 401 message is not for the person.
    if (!signal.aborted) say('barcode-message', explain(err), 'error');
  } finally {
    if (!signal.aborted) setBusy(button, false);
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
