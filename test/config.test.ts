import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../src/config.js';
import { closedPort } from './helpers/redis.js';

const cwd = mkdtempSync(path.join(os.tmpdir(), 'kiln-config-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

function expectConfigError(env: Record<string, string>, name: string): void {
  let error: unknown;
  try {
    loadConfig(env, cwd);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).variable).toBe(name);
  expect((error as Error).message.startsWith(`${name}:`)).toBe(true);
}

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({}, cwd);
    expect(c.host).toBe('127.0.0.1');
    expect(c.port).toBe(8000);
    expect(c.dataDir).toBe(path.join(cwd, 'data'));
    expect(c.databaseUrl).toBeUndefined();
    expect(c.maxUploadSize).toBe(10485760);
    expect(c.maxFilesPerOrder).toBe(4);
    expect(c.maxImagePixels).toBe(50_000_000);
    expect(c.accessTokenLifetimeMin).toBe(15);
    expect(c.shortRefreshLifetimeMin).toBe(60);
    expect(c.longRefreshLifetimeMin).toBe(43200);
    expect([c.rateLimitAuth, c.rateLimitUpload, c.rateLimitDefault]).toEqual([5, 10, 100]);
    expect(c.galleryPublicRead).toBe(true);
    expect(c.durableWrites).toBe(false);
    expect(c.signedUrlTtl).toBe(3600);
    expect(c.cacheTtlSeconds).toBe(3600);
    expect(c.cacheMaxItems).toBe(1000);
    expect(c.redisPrefix).toBe('kiln');
    expect(c.openai.imageModel).toBe('gpt-image-1');
    expect(c.allowedOrigins).toEqual([]);
    expect(c.jpegQuality).toBe(85);
    expect(c.logLevel).toBe('info');
    expect(c.logFile).toBeUndefined();
    expect(c.logMaxSize).toBe('10m');
    expect(c.logKeep).toBe(7);
    expect(c.openai.timeoutSeconds).toBe(120);
    expect(c.jobConcurrency).toBe(2);
    expect(c.shutdownGraceSeconds).toBe(10);
    // The rest of the README's table.
    expect(c.redisUrl).toBeUndefined();
    expect(c.storage).toBe('fs');
    // No proxy trusted: a client's own X-Forwarded-For must not pick the address its rate limit is counted under.
    expect(c.trustProxy).toBe(0);
    expect(c.eanProviderUrl).toBe('https://world.openfoodfacts.org');
    expect(c.jobRetentionDays).toBe(30);
    expect(c.aiEditRetentionDays).toBe(0);
  });

  // The README's upper bounds, each taken as written and refused one past it: a bound moved by one either way fails here.
  it.each<[string, number, ((c: Config) => unknown) | null]>([
    ['JOB_CONCURRENCY', 256, (c) => c.jobConcurrency],
    ['LOG_KEEP', 1000, (c) => c.logKeep],
    ['CACHE_MAX_ITEMS', 1_000_000, (c) => c.cacheMaxItems],
    ['CACHE_TTL_SECONDS', 315_360_000, (c) => c.cacheTtlSeconds],
    ['JOB_RETENTION_DAYS', 3650, (c) => c.jobRetentionDays],
    ['AI_EDIT_RETENTION_DAYS', 3650, (c) => c.aiEditRetentionDays],
    ['OPENAI_TIMEOUT_SECONDS', 86_400, (c) => c.openai.timeoutSeconds],
    ['PIPELINE_TIMEOUT_MINUTES', 1440, (c) => c.pipeline.timeoutMinutes],
    ['ACCESS_TOKEN_LIFETIME', 5_256_000, (c) => c.accessTokenLifetimeMin],
    ['SHORT_REFRESH_TOKEN_LIFETIME', 5_256_000, (c) => c.shortRefreshLifetimeMin],
    ['LONG_REFRESH_TOKEN_LIFETIME', 5_256_000, (c) => c.longRefreshLifetimeMin],
    ['SIGNED_URL_TTL', 315_360_000, (c) => c.signedUrlTtl],
    ['ORDER_HOLD_MINUTES', 5_256_000, (c) => c.orderHoldMinutes],
    ['SHUTDOWN_GRACE_SECONDS', 3600, (c) => c.shutdownGraceSeconds],
    ['MAX_FILES_PER_ORDER', 100, (c) => c.maxFilesPerOrder],
    ['TRUST_PROXY', 10, (c) => c.trustProxy],
    ['JPEG_QUALITY', 100, (c) => c.jpegQuality],
    // Read by src/threadpool.ts, not kept in Config: taken means the start goes on.
    ['UV_THREADPOOL_SIZE', 1024, null],
  ])('takes %s up to %i and refuses one more, naming it', (name, max, field) => {
    const c = loadConfig({ [name]: String(max) }, cwd);
    if (field) expect(field(c)).toBe(max);
    expectConfigError({ [name]: String(max + 1) }, name);
  });

  it('holds unpaid orders for an hour when payments are on, for ever when they are off, unless ORDER_HOLD_MINUTES says', () => {
    expect(loadConfig({}, cwd).orderHoldMinutes).toBe(0);
    expect(loadConfig({ STRIPE_KEY: 'sk_test_abc' }, cwd).orderHoldMinutes).toBe(60);
    expect(loadConfig({ STRIPE_KEY: 'sk_test_abc', ORDER_HOLD_MINUTES: '0' }, cwd).orderHoldMinutes).toBe(0);
    expect(loadConfig({ ORDER_HOLD_MINUTES: '15' }, cwd).orderHoldMinutes).toBe(15);
  });

  // Each variable set in the environment reaches its typed field: a misspelt name in config.ts reads the default instead.
  it.each<[string, string, (c: Config) => unknown, unknown]>([
    ['JPEG_QUALITY', '70', (c) => c.jpegQuality, 70],
    ['LOG_LEVEL', 'debug', (c) => c.logLevel, 'debug'],
    ['LOG_LEVEL', 'WARN', (c) => c.logLevel, 'warn'],
    ['LOG_FILE', '/var/log/kiln/kiln.log', (c) => c.logFile, '/var/log/kiln/kiln.log'],
    ['LOG_MAX_SIZE', '5M', (c) => c.logMaxSize, '5m'],
    ['LOG_MAX_SIZE', '512k', (c) => c.logMaxSize, '512k'],
    ['LOG_KEEP', '3', (c) => c.logKeep, 3],
    ['OPENAI_TIMEOUT_SECONDS', '30', (c) => c.openai.timeoutSeconds, 30],
    ['SIGNED_URL_TTL', '60', (c) => c.signedUrlTtl, 60],
    ['JOB_CONCURRENCY', '5', (c) => c.jobConcurrency, 5],
    ['SHUTDOWN_GRACE_SECONDS', '60', (c) => c.shutdownGraceSeconds, 60],
    ['LOG_MAX_SIZE', '1k', (c) => c.logMaxSize, '1k'],
    ['FETCH_ALLOWED_HOSTS', 'Auth.Internal, 127.0.0.1, ::1, [fd00::1], kiln_s3', (c) => c.fetchAllowedHosts, ['auth.internal', '127.0.0.1', '::1', '[fd00::1]', 'kiln_s3']],
    ['STRIPE_WEBHOOK_SECRET', 'whsec_abc123', (c) => c.stripe.webhookSecret, 'whsec_abc123'],
    ['ORDER_HOLD_MINUTES', '30', (c) => c.orderHoldMinutes, 30],
    ['API_KEY', 'k'.repeat(32), (c) => c.apiKey, 'k'.repeat(32)],
  ])('reads %s=%s', (name, value, field, expected) => {
    expect(field(loadConfig({ [name]: value }, cwd))).toEqual(expected);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_URL', 'mysql://x'],
    ['MAX_UPLOAD_SIZE', '-5'],
    ['GALLERY_PUBLIC_READ', 'maybe'],
    ['DURABLE_WRITES', 'sometimes'],
    ['LOG_LEVEL', 'loud'],
    ['STORAGE', 'tape'],
    ['ALLOWED_ORIGINS', '*'],
    ['ALLOWED_ORIGINS', 'shop.example'],
    ['ALLOWED_ORIGINS', 'https://shop.example/'],
    ['ALLOWED_ORIGINS', 'https://shop.example,ftp://files.example'],
    ['ALLOWED_ORIGINS', 'https://Shop.Example'],
    ['ALLOWED_ORIGINS', 'https://*.shop.example'],
    ['JPEG_QUALITY', '0'],
    ['JPEG_QUALITY', '101'],
    ['JPEG_QUALITY', 'high'],
    ['LOG_MAX_SIZE', '10 MB'],
    ['LOG_MAX_SIZE', 'big'],
    ['LOG_MAX_SIZE', '-1m'],
    ['LOG_KEEP', '0'],
    ['LOG_KEEP', 'all'],
    ['OPENAI_TIMEOUT_SECONDS', '0'],
    ['OPENAI_TIMEOUT_SECONDS', '2m'],
    ['SIGNED_URL_TTL', '0'],
    ['SIGNED_URL_TTL', '-60'],
    ['SIGNED_URL_TTL', 'an hour'],
    ['JOB_CONCURRENCY', '0'],
    ['JOB_CONCURRENCY', '1.5'],
    ['SHUTDOWN_GRACE_SECONDS', '0'],
    ['SHUTDOWN_GRACE_SECONDS', '3601'],
    ['SHUTDOWN_GRACE_SECONDS', '10s'],
    ['PORT', '1.2.3'],
    ['MAX_FILES_PER_ORDER', '0'],
    ['MAX_FILES_PER_ORDER', '101'],
    ['TRUST_PROXY', '11'],
    ['REDIS_URL', 'http://x'],
    // 0 would turn rotation by size off.
    ['LOG_MAX_SIZE', '0'],
    ['LOG_MAX_SIZE', '0k'],
    // pino-roll would read a bare number as megabytes: 10485760 (meant as 10 MB in bytes) as 10 TB.
    ['LOG_MAX_SIZE', '10485760'],
    ['LOG_MAX_SIZE', '1'],
    // An entry is matched exactly against a host: a URL, a port or a path never matches.
    ['FETCH_ALLOWED_HOSTS', 'http://127.0.0.1/'],
    ['FETCH_ALLOWED_HOSTS', 'auth.internal,127.0.0.1:8080'],
    ['FETCH_ALLOWED_HOSTS', 'auth.internal/jwks'],
    ['FETCH_ALLOWED_HOSTS', 'user@auth.internal'],
    ['STRIPE_WEBHOOK_SECRET', 'nope'],
    ['STRIPE_WEBHOOK_SECRET', 'sk_test_123'],
    // An admin key anyone may try to guess, and a placeholder left in a .env.
    ['API_KEY', 'a'],
    ['API_KEY', 'your_api_key_here'],
    ['API_KEY', 'x'.repeat(31)],
    // A space a header could not carry as it is.
    ['API_KEY', `${'k'.repeat(20)} ${'k'.repeat(20)}`],
    ['ORDER_HOLD_MINUTES', '-1'],
    ['ORDER_HOLD_MINUTES', 'an hour'],
    ['ORDER_HOLD_MINUTES', String(10 * 365 * 24 * 60 + 1)],
    // libuv would take these as one thread, without a word.
    ['UV_THREADPOOL_SIZE', 'abc'],
    ['UV_THREADPOOL_SIZE', '0'],
    ['UV_THREADPOOL_SIZE', '-3'],
    ['UV_THREADPOOL_SIZE', '2000'],
  ])('rejects %s=%s naming the variable', (name, value) => {
    expectConfigError({ [name]: value }, name);
  });

  it.each([
    ['ACCESS_TOKEN_LIFETIME', '999999999999'],
    ['SHORT_REFRESH_TOKEN_LIFETIME', '999999999999'],
    ['LONG_REFRESH_TOKEN_LIFETIME', '999999999999'],
    ['LONG_REFRESH_TOKEN_LIFETIME', '5256001'],
    ['OPENAI_TIMEOUT_SECONDS', '2147484'],
    ['CACHE_TTL_SECONDS', '9007199254740991'],
    ['CACHE_MAX_ITEMS', '1000000000'],
    // Ten years is the cap: a bound that keeps a link's `expires` (now + TTL, in seconds) far below 2^53,
    // the integers a URL and a JSON number hold exactly; the first value is that limit itself.
    ['SIGNED_URL_TTL', '9007199254740991'],
    ['SIGNED_URL_TTL', String(10 * 365 * 24 * 3600 + 1)],
  ])('rejects a duration or size that would break later: %s=%s', (name, value) => {
    expectConfigError({ [name]: value }, name);
  });

  it('asks for a unit on a bare LOG_MAX_SIZE, which pino-roll would take as megabytes', () => {
    expect(() => loadConfig({ LOG_MAX_SIZE: '10485760' }, cwd)).toThrow(
      'LOG_MAX_SIZE: expected a size with its unit, k, m or g (10m is 10 MB), got "10485760"',
    );
  });

  it('rejects a WEBHOOK_URL without a WEBHOOK_SECRET, naming the secret', () => {
    expectConfigError({ WEBHOOK_URL: 'https://h' }, 'WEBHOOK_SECRET');
    expect(loadConfig({ WEBHOOK_URL: 'https://h', WEBHOOK_SECRET: 's' }, cwd).webhookUrl).toBe('https://h');
  });

  it('takes token lifetimes up to ten years, in minutes', () => {
    const tenYears = String(10 * 365 * 24 * 60);
    const c = loadConfig({ ACCESS_TOKEN_LIFETIME: tenYears, SHORT_REFRESH_TOKEN_LIFETIME: tenYears, LONG_REFRESH_TOKEN_LIFETIME: tenYears }, cwd);
    expect([c.accessTokenLifetimeMin, c.shortRefreshLifetimeMin, c.longRefreshLifetimeMin]).toEqual([5256000, 5256000, 5256000]);
    // The furthest expiry is still a valid date.
    expect(new Date(Date.now() + c.longRefreshLifetimeMin * 60_000).toISOString()).toMatch(/^20\d\d-/);
  });

  it('takes a REDIS_PREFIX of plain characters, and refuses one with glob or key syntax, naming it', () => {
    expect(loadConfig({ REDIS_PREFIX: 'shop-staging_2.eu' }, cwd).redisPrefix).toBe('shop-staging_2.eu');
    for (const bad of ['a:b', 'a*', 'a{b}', 'x'.repeat(65), 'büro']) expectConfigError({ REDIS_PREFIX: bad }, 'REDIS_PREFIX');
  });

  it('reads JWT_ISSUER and JWT_AUDIENCE, and refuses "kiln" as JWT_ISSUER (the issuer of its own tokens)', () => {
    expect(loadConfig({}, cwd)).toMatchObject({ jwtIssuer: undefined, jwtAudience: undefined });
    expect(loadConfig({ JWT_ISSUER: 'https://auth.example', JWT_AUDIENCE: 'kiln-shop' }, cwd)).toMatchObject({ jwtIssuer: 'https://auth.example', jwtAudience: 'kiln-shop' });
    expectConfigError({ JWT_ISSUER: 'kiln' }, 'JWT_ISSUER');
  });

  it('rejects a JWT_SECRET shorter than 32 characters, naming it', () => {
    expectConfigError({ JWT_SECRET: 'abc' }, 'JWT_SECRET');
    expectConfigError({ JWT_SECRET: 'x'.repeat(31) }, 'JWT_SECRET');
    expect(() => loadConfig({ JWT_SECRET: 'abc' }, cwd)).toThrow(/at least 32 characters/);
    expect(loadConfig({ JWT_SECRET: 'x'.repeat(32) }, cwd).jwtSecret).toBe('x'.repeat(32));
    expect(loadConfig({}, cwd).jwtSecret).toBeUndefined();
  });

  it('takes ALLOWED_ORIGINS as origins exactly as browsers send them', () => {
    const c = loadConfig({ ALLOWED_ORIGINS: 'https://shop.example, http://localhost:5173' }, cwd);
    expect(c.allowedOrigins).toEqual(['https://shop.example', 'http://localhost:5173']);
  });

  it('says how to write an origin that is almost right', () => {
    expect(() => loadConfig({ ALLOWED_ORIGINS: 'https://shop.example/' }, cwd)).toThrow(/write "https:\/\/shop\.example"/);
  });

  describe('STORAGE=s3', () => {
    const S3 = { STORAGE: 's3', S3_BUCKET: 'shop-images' };

    it('reads the bucket and its defaults: us-east-1, AWS credential chain, virtual-host style without an endpoint', () => {
      expect(loadConfig(S3, cwd).s3).toEqual({ bucket: 'shop-images', region: 'us-east-1', endpoint: undefined, accessKeyId: undefined, secretAccessKey: undefined, forcePathStyle: false, prefix: '' });
      expect(loadConfig({}, cwd).s3).toBeUndefined();
    });

    it('takes an S3-compatible endpoint with path style, keys, a region and a prefix', () => {
      const c = loadConfig({ ...S3, S3_ENDPOINT: 'http://127.0.0.1:9000', S3_ACCESS_KEY_ID: 'id', S3_SECRET_ACCESS_KEY: 'secret', S3_REGION: 'eu-central-1', S3_PREFIX: '/kiln/prod/' }, cwd);
      expect(c.storage).toBe('s3');
      expect(c.s3).toEqual({ bucket: 'shop-images', region: 'eu-central-1', endpoint: 'http://127.0.0.1:9000', accessKeyId: 'id', secretAccessKey: 'secret', forcePathStyle: true, prefix: 'kiln/prod/' });
      expect(loadConfig({ ...S3, S3_ENDPOINT: 'https://s3.example.com', S3_FORCE_PATH_STYLE: 'false' }, cwd).s3?.forcePathStyle).toBe(false);
    });

    it.each([
      [{ STORAGE: 's3' }, 'S3_BUCKET'],
      [{ ...S3, S3_BUCKET: 'Not_A_Bucket' }, 'S3_BUCKET'],
      [{ ...S3, S3_ENDPOINT: 'ftp://x' }, 'S3_ENDPOINT'],
      [{ ...S3, S3_ACCESS_KEY_ID: 'id' }, 'S3_SECRET_ACCESS_KEY'],
      [{ ...S3, S3_SECRET_ACCESS_KEY: 'secret' }, 'S3_ACCESS_KEY_ID'],
      [{ ...S3, S3_PREFIX: 'a/../b' }, 'S3_PREFIX'],
      [{ ...S3, S3_PREFIX: 'a b' }, 'S3_PREFIX'],
      [{ ...S3, S3_FORCE_PATH_STYLE: 'sometimes' }, 'S3_FORCE_PATH_STYLE'],
    ])('rejects %j naming %s', (env, name) => {
      expectConfigError(env, name);
    });
  });

  it('reads .env without overriding the environment', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-dotenv-'));
    writeFileSync(path.join(dir, '.env'), 'PORT=9001\nHOST=0.0.0.0\n');
    const c = loadConfig({ HOST: '127.0.0.2' }, dir);
    rmSync(dir, { recursive: true, force: true });
    expect(c.port).toBe(9001);
    expect(c.host).toBe('127.0.0.2');
  });

  it('names .env when it cannot read it', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-dotenv-'));
    try {
      mkdirSync(path.join(dir, '.env'));
      expect(() => loadConfig({}, dir)).toThrow(/^\.env: cannot read .*\(EISDIR\)$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  function startFails(env: Record<string, string>, command: string[], cwdOfProcess?: string, killAfterMs = 15_000): { status: number; stderr: string } {
    try {
      // A start that is not stopped would serve for ever: the timeout kills it (status null).
      execFileSync(process.execPath, command, { cwd: cwdOfProcess, env: { ...process.env, DATA_DIR: cwd, ...env, PORT: env.PORT ?? '0' }, stdio: 'pipe', timeout: killAfterMs });
    } catch (e) {
      const err = e as { status: number | null; stderr: Buffer };
      return { status: err.status ?? -1, stderr: err.stderr.toString() };
    }
    return { status: 0, stderr: '' };
  }

  it('stops the process with one line naming the variable', () => {
    const { status, stderr } = startFails({ PORT: 'abc' }, ['dist/src/main.js', 'serve']);
    expect(status).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('PORT');
  });

  describe('a start that cannot have what a setting names stops with one line naming it', () => {
    const MAIN = path.resolve('dist/src/main.js');
    const aFile = path.join(cwd, 'a-file');
    writeFileSync(aFile, 'not a directory');
    const oneLine = (result: { status: number; stderr: string }, name: string) => {
      expect(result.status).toBe(1);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(new RegExp(`^kiln: ${name}: `));
    };

    it('LOG_FILE in a directory it cannot make (before: every log line dropped, and some commands never exited)', () => {
      oneLine(startFails({ LOG_FILE: path.join(aFile, 'kiln.log') }, [MAIN, 'migrate']), 'LOG_FILE');
      oneLine(startFails({ LOG_FILE: cwd }, [MAIN, 'serve']), 'LOG_FILE');
    });

    it('DATA_DIR that is a file', () => {
      oneLine(startFails({ DATA_DIR: aFile }, [MAIN, 'serve']), 'DATA_DIR');
    });

    // A read-only mount: root may write anywhere else, so this needs a file system of its own (root, and a machine that lets it mount).
    it.runIf(process.platform === 'linux' && process.getuid?.() === 0)('DATA_DIR on a read-only file system, with the database and tmp/ of an earlier start: one line saying it is read-only (EROFS)', (context) => {
      const mounted = path.join(cwd, 'read-only');
      mkdirSync(mounted);
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mounted], { stdio: 'pipe' });
      } catch {
        context.skip();
      }
      try {
        // A DATA_DIR that served before: its database and tmp/ are there.
        execFileSync(process.execPath, [MAIN, 'migrate'], { env: { ...process.env, DATA_DIR: mounted, LOG_LEVEL: 'silent' }, stdio: 'pipe' });
        execFileSync('mount', ['-o', 'remount,ro', mounted], { stdio: 'pipe' });
        const result = startFails({ DATA_DIR: mounted }, [MAIN, 'serve']);
        oneLine(result, 'DATA_DIR');
        expect(result.stderr).toContain('EROFS');
      } finally {
        execFileSync('umount', [mounted], { stdio: 'pipe' });
      }
    });

    // /proc answers ENOENT for a new entry though it exists: Node's recursive mkdir never returns there (before: a silent hang).
    it.runIf(existsSync('/proc/self'))('a directory to make where the file system takes no new one (under /proc): one line, not a hang', () => {
      oneLine(startFails({ DATA_DIR: '/proc/kiln-no-such/data' }, [MAIN, 'serve']), 'DATA_DIR');
      oneLine(startFails({ LOG_FILE: '/proc/kiln-no-such/kiln.log' }, [MAIN, 'migrate']), 'LOG_FILE');
      oneLine(startFails({ DATABASE_URL: 'sqlite:///proc/kiln-no-such/kiln.db' }, [MAIN, 'migrate']), 'DATABASE_URL');
    });

    it('DATABASE_URL that cannot be reached, for a command that does not migrate too', async () => {
      const port = await closedPort();
      const result = startFails({ DATABASE_URL: `postgres://kiln@127.0.0.1:${port}/kiln` }, [MAIN, 'users', 'create', '--email', 'a@example.com', '--username', 'a', '--password', 'long-enough-1']);
      oneLine(result, 'DATABASE_URL');
      expect(result.stderr).toContain('ECONNREFUSED');
    });

    it('DATABASE_URL on a server that takes the connection and never answers: one line within the connect timeout, not a hang', async () => {
      // The kernel completes the handshake for a listening socket even while this process is blocked in execFileSync below.
      const silent = net.createServer(() => undefined);
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = silent.address() as net.AddressInfo;
        const started = Date.now();
        // Killed after 40 s: a process that hangs ends with no line at all.
        const result = startFails({ DATABASE_URL: `postgres://kiln@127.0.0.1:${port}/kiln` }, [MAIN, 'migrate'], undefined, 40_000);
        oneLine(result, 'DATABASE_URL');
        expect(result.stderr).toMatch(/timeout/i);
        // The 10 s connect timeout, and a start that can take seconds on a loaded machine.
        expect(Date.now() - started).toBeLessThan(30_000);
      } finally {
        silent.close();
      }
    }, 50_000);

    it('.env it cannot read, while help still answers', () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-dotenv-'));
      try {
        mkdirSync(path.join(dir, '.env'));
        oneLine(startFails({}, [MAIN, 'serve'], dir), '\\.env');
        expect(execFileSync(process.execPath, [MAIN, 'help'], { cwd: dir }).toString()).toContain('usage: kiln');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  it.each([
    ['LONG_REFRESH_TOKEN_LIFETIME', '999999999999'],
    ['JWT_SECRET', 'abc'],
  ])('stops the start (from source) with one line naming %s when it is %s', (name, value) => {
    const { status, stderr } = startFails({ [name]: value }, ['--import', 'tsx', 'src/main.ts', 'serve']);
    expect(status).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain(`${name}:`);
  });
});
