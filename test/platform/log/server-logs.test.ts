/**
 * A real listening Kiln logging to a file at debug level: every request
 * leaves one line with its id, method, route, status and duration, and no
 * credential sent with a request (headers, JSON bodies, error objects)
 * appears anywhere in the file.
 */
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../../src/app.js';
import { createContext, type Context } from '../../../src/context.js';
import { tempDataDir, testConfig } from '../../helpers/config.js';
import { readLogLines, readLogText } from '../../helpers/logs.js';

const SECRETS = ['sekrit-token-123', 'sekrit-key-456', 'hunter2-password', 'refresh-sekrit-789', 'sid-sekrit-000'];

const CREDENTIALS = {
  authorization: 'Bearer sekrit-token-123',
  'x-api-key': 'sekrit-key-456',
  cookie: 'session=sid-sekrit-000',
};

interface Line {
  reqId?: string;
  method?: string;
  route?: string;
  url?: string;
  status?: number;
  ms?: number;
  msg?: string;
  level?: number;
  err?: { message?: string; type?: string };
}

describe('request logs in LOG_FILE', () => {
  const temp = tempDataDir();
  const logDir = path.join(temp.dir, 'logs');
  let ctx: Context;
  let app: App;
  let url: string;
  let text = '';
  let lines: Line[] = [];

  beforeAll(async () => {
    ctx = await createContext(testConfig(temp.dir, { LOG_FILE: path.join(logDir, 'kiln.log'), LOG_LEVEL: 'debug' }));
    app = await buildApp(ctx);
    // A route that fails the way an HTTP client error does: the error carries the request it made upstream.
    app.post('/test/upstream-failure', async (request) => {
      throw Object.assign(new Error('the upstream service failed'), {
        request: { headers: { ...request.headers, ...CREDENTIALS }, body: request.body },
        config: { headers: { Authorization: CREDENTIALS.authorization, 'X-API-Key': CREDENTIALS['x-api-key'] } },
        rawBody: JSON.stringify(request.body),
      });
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

    const json = { 'content-type': 'application/json', ...CREDENTIALS };
    const login = JSON.stringify({ email: 'a@example.com', password: 'hunter2-password', remember_me: true });
    await fetch(`${url}/health`, { headers: { ...CREDENTIALS, 'x-request-id': 'req-health-1' } });
    await fetch(`${url}/auth/login`, { method: 'POST', headers: { ...json, 'x-request-id': 'req-login-1' }, body: login });
    // Without credential headers the body reaches the login route itself.
    await fetch(`${url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'req-login-2' }, body: login });
    await fetch(`${url}/auth/refresh`, { method: 'POST', headers: json, body: JSON.stringify({ refresh_token: 'refresh-sekrit-789' }) });
    // Unknown credentials are a 401 before routing; here the secrets ride in the query string and a cookie.
    await fetch(`${url}/no/such/route?token=sekrit-token-123&api_key=sekrit-key-456`, { headers: { cookie: CREDENTIALS.cookie } });
    // No credential headers here (bad ones are a 401 before the handler runs): the secrets ride in the body and the error.
    await fetch(`${url}/test/upstream-failure`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: CREDENTIALS.cookie, 'x-request-id': 'req-fail-1' },
      body: login,
    });
    ctx.log.error({ err: new Error('a failure whose message is harmless'), body: { password: 'hunter2-password' } }, 'direct error');

    // pino writes through a worker thread: only after close is every line on disk.
    await app.close();
    await ctx.close();

    text = readLogText(logDir);
    lines = readLogLines<Line>(logDir);
  });

  afterAll(() => temp.cleanup());

  it('writes one request line per request with id, method, route, status and duration', () => {
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(6);
    for (const line of requests) {
      expect(typeof line.reqId).toBe('string');
      expect(typeof line.method).toBe('string');
      expect(typeof line.route).toBe('string');
      expect(typeof line.status).toBe('number');
      expect(typeof line.ms).toBe('number');
    }
    expect(requests.find((l) => l.reqId === 'req-health-1')).toMatchObject({ method: 'GET', route: '/health', url: '/health' });
    expect(requests.find((l) => l.reqId === 'req-login-1')).toMatchObject({ method: 'POST', url: '/auth/login' });
    expect(requests.find((l) => l.reqId === 'req-login-2')).toMatchObject({ method: 'POST', url: '/auth/login' });
    expect(requests.find((l) => l.reqId === 'req-fail-1')).toMatchObject({ route: '/test/upstream-failure', status: 500 });
    const unmatched = requests.find((l) => l.url === '/no/such/route');
    expect(unmatched).toMatchObject({ status: 404, route: 'unmatched' });
  });

  it('writes every line, request lines included, as JSON with an ISO UTC time, a level and service "kiln"', () => {
    expect(lines.length).toBeGreaterThan(6);
    for (const line of lines as Array<Line & { time?: string; service?: string }>) {
      expect(line.service).toBe('kiln');
      expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect([20, 30, 40, 50]).toContain(line.level);
      expect(typeof line.msg).toBe('string');
    }
  });

  it('logs a rejected request (4xx) with its code at debug level, and its request line at info', () => {
    const refresh = lines.filter((l) => l.url === '/auth/refresh' && l.msg === 'request');
    expect(refresh).toEqual([expect.objectContaining({ level: 30, status: 401 })]);
    const rejected = lines.find((l) => l.reqId === refresh[0]?.reqId && l.msg === 'request rejected') as (Line & { code?: string }) | undefined;
    expect(rejected).toMatchObject({ level: 20, code: expect.any(String) });
    // Never louder: a 4xx is the client's to mend.
    expect(lines.filter((l) => l.msg === 'request rejected' && l.level !== 20)).toEqual([]);
  });

  it('logs the failures, with their harmless messages', () => {
    const failed = lines.find((l) => l.reqId === 'req-fail-1' && l.level === 50);
    expect(failed?.err?.message).toBe('the upstream service failed');
    expect(lines.find((l) => l.msg === 'direct error')?.err?.message).toBe('a failure whose message is harmless');
  });

  it('never writes a credential', () => {
    expect(text.length).toBeGreaterThan(0);
    for (const secret of SECRETS) expect(text).not.toContain(secret);
  });
});
