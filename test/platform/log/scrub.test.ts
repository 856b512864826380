import { describe, expect, it } from 'vitest';
import { CENSOR, scrubLine, scrubString, scrubValue, serializeError } from '../../../src/platform/log/index.js';

describe('scrubString', () => {
  it('removes bearer tokens, JWTs and secret pairs from free text', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXZhbHVl';
    const text = scrubString(
      `Authorization: Bearer sekrit-token-123; jwt ${jwt}; password=hunter2&x=1 {"refresh_token": "r-999"} api_key=k-1`,
    );
    for (const secret of ['sekrit-token-123', jwt, 'hunter2', 'r-999', 'k-1']) expect(text).not.toContain(secret);
    expect(text).toContain('x=1');
  });

  it('removes secret keys by their shape: OpenAI\'s, whole or masked, and Stripe\'s', () => {
    const text = scrubString(
      'Incorrect API key provided: sk-proj-abc123**********wxyz. Also sk-OPENAISECRET999, sk_live_51HxYzAbCdEf, rk_test_4eC39HqLyjWD and whsec_abcdefgh1234.',
    );
    for (const secret of ['sk-proj', 'wxyz', 'sk-OPENAI', 'sk_live', 'rk_test', 'whsec_']) expect(text).not.toContain(secret);
    expect(text).toContain('Incorrect API key provided: ');
    // Words that merely contain the letters stay.
    expect(scrubString('desk-photos-2024 and task_runner_01')).toBe('desk-photos-2024 and task_runner_01');
  });

  it('leaves a word after "token" in a sentence, and still takes a token after it', () => {
    for (const text of ['refresh token reused: session revoked', 'Token expired', 'the token was revoked']) {
      expect(scrubString(text)).toBe(text);
      expect(scrubLine(JSON.stringify({ msg: text }))).toBe(JSON.stringify({ msg: text }));
    }
    const secrets = ['9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b', 'AbCdEfGhIjKlMn', 'abcdefghijklmnopqrstuvwxyz', 'k-1.x'];
    for (const secret of secrets) {
      expect(scrubString(`refresh token ${secret} reused`)).toBe(`refresh token ${CENSOR} reused`);
      expect(scrubLine(`"Token ${secret}"`)).toBe(`"Token ${CENSOR}"`);
    }
  });

  it('is idempotent', () => {
    const once = scrubString('password=hunter2 Bearer abc "token":"t"');
    expect(scrubString(once)).toBe(once);
  });

  it('leaves ordinary text alone', () => {
    const text = 'GET /api/v1/process/status 200 in 12 ms';
    expect(scrubString(text)).toBe(text);
  });

  it('line pass keeps a JSON line valid', () => {
    const line = JSON.stringify({ msg: 'token: expired', note: 'Bearer abc.def' }) + '\n';
    const out = scrubLine(line);
    expect(JSON.parse(out)).toEqual({ msg: 'token: expired', note: `Bearer ${CENSOR}` });
  });
});

describe('scrubValue', () => {
  it('replaces values under secret-named keys at any depth', () => {
    const out = scrubValue({
      a: { b: { c: { password: 'p1', newPassword: 'p2', apiKey: 'k', 'X-API-Key': 'k2', client_secret: 's' } } },
      headers: { authorization: 'Bearer t', cookie: 'sid=1', accept: 'image/png' },
      list: [{ access_token: 'at' }],
    });
    const text = JSON.stringify(out);
    for (const secret of ['p1', 'p2', '"k"', 'k2', '"s"', 'Bearer t', 'sid=1', '"at"']) expect(text).not.toContain(secret);
    expect(text).toContain('image/png');
  });

  it('leaves payload strings out, and says so only once when walked twice', () => {
    const once = scrubValue({ body: 'password=hunter2', rawBody: '{"a":1}' });
    expect(once).toEqual({ body: '[omitted 16 chars]', rawBody: '[omitted 7 chars]' });
    expect(scrubValue(once)).toEqual(once);
  });

  it('survives cycles, buffers and dates', () => {
    const a: Record<string, unknown> = { when: new Date('2030-01-01T00:00:00Z'), data: Buffer.from('abc') };
    a.self = a;
    expect(scrubValue(a)).toEqual({ when: '2030-01-01T00:00:00.000Z', data: '[binary 3 bytes]', self: '[circular]' });
  });
});

describe('serializeError', () => {
  it('keeps type, message and stack and drops what an HTTP client error carries', () => {
    const err = Object.assign(new Error('upstream said 401'), {
      config: { headers: { Authorization: 'Bearer sekrit-token-123' }, data: '{"password":"hunter2"}' },
      body: 'password=hunter2',
      cause: Object.assign(new Error('inner'), { token: 'inner-secret' }),
    });
    const out = serializeError(err) as Record<string, unknown>;
    expect(out.type).toBe('Error');
    expect(String(out.message)).toMatch(/^upstream said 401/); // pino appends the causes' messages
    expect(String(out.stack)).toContain('upstream said 401');
    const text = JSON.stringify(out);
    for (const secret of ['sekrit-token-123', 'hunter2', 'inner-secret']) expect(text).not.toContain(secret);
  });
});
