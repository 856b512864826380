/**
 * The account rules over the real databases: each case runs on SQLite and,
 * when TEST_DATABASE_URL is set, on PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findKeyOwner } from '../../../src/auth/lookup.js';
import { SERVICE_PRINCIPAL_ID, type Principal } from '../../../src/auth/principal.js';
import { sha256Hex } from '../../../src/auth/secrets.js';
import { createContext, type Context, type ContextOptions } from '../../../src/context.js';
import { DomainError } from '../../../src/errors.js';
import { changeUser, listUsers } from '../../../src/modules/users/admin.js';
import { endCredentials, insertRefreshToken } from '../../../src/modules/users/repo.js';
import { createApiKey } from '../../../src/modules/users/api-keys.js';
import { bootstrapAdmin } from '../../../src/modules/users/bootstrap.js';
import { createUser, deleteMe, updateMe } from '../../../src/modules/users/service.js';
import { ENDED_TOKEN_KEEP_MS, login, logout, pruneEndedSessions, refresh } from '../../../src/modules/users/sessions.js';
import { tempDataDir, testConfig } from '../../helpers/config.js';
import { capturingLog } from '../../helpers/logs.js';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { newAccountFields, TestClock } from '../../auth/helpers.js';

interface Backend {
  /** Opens one more Context over the same database (as a second process would). */
  open(env?: Record<string, string>, options?: ContextOptions): Promise<Context>;
  dispose(): Promise<void>;
}

async function sqliteBackend(): Promise<Backend> {
  const { dir, cleanup } = tempDataDir();
  const opened: Context[] = [];
  return {
    async open(env = {}, options = {}) {
      const ctx = await createContext(testConfig(dir, { JWT_SECRET: 'storage-test-secret-of-32-characters', ...env }), options);
      opened.push(ctx);
      return ctx;
    },
    async dispose() {
      for (const ctx of opened) await ctx.close();
      cleanup();
    },
  };
}

async function postgresBackend(): Promise<Backend> {
  const database = await createTestDatabase();
  const { dir, cleanup } = tempDataDir();
  const opened: Context[] = [];
  return {
    async open(env = {}, options = {}) {
      const ctx = await createContext(testConfig(dir, { DATABASE_URL: database.url, JWT_SECRET: 'storage-test-secret-of-32-characters', ...env }), options);
      opened.push(ctx);
      return ctx;
    },
    async dispose() {
      for (const ctx of opened) await ctx.close();
      await database.drop();
      cleanup();
    },
  };
}

const backends: Array<[string, () => Promise<Backend>, boolean]> = [
  ['SQLite', sqliteBackend, false],
  ['PostgreSQL', postgresBackend, !hasPostgres],
];

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DomainError) return err.code;
    throw err;
  }
  return 'no error';
}

const as = (userId: string): Principal => ({ userId, isAdmin: false, via: 'jwt' });
/** The admin making changeUser's changes, someone else than the account changed: the static API_KEY, with no account row. */
const BY_SERVICE_KEY = { userId: SERVICE_PRINCIPAL_ID, via: 'static_key' } as const;

describe.each(backends)('accounts on %s', (_name, makeBackend, skip) => {
  let backend: Backend;
  let ctx: Context;

  beforeAll(async () => {
    if (skip) return;
    backend = await makeBackend();
    ctx = await backend.open();
  });
  afterAll(async () => {
    if (!skip) await backend.dispose();
  });

  it.skipIf(skip)('keeps email unique case-insensitively and username unique', async () => {
    const fields = newAccountFields();
    await createUser(ctx, fields);
    expect(await codeOf(createUser(ctx, { ...newAccountFields(), email: fields.email.toUpperCase() }))).toBe('email_taken');
    expect(await codeOf(createUser(ctx, { ...newAccountFields(), username: fields.username }))).toBe('username_taken');
    const racing = await Promise.allSettled([createUser(ctx, newAccountFields()), createUser(ctx, { ...newAccountFields(), email: fields.email.toLowerCase() })]);
    expect(racing.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
  });

  it.skipIf(skip)('rotates refresh tokens, lets exactly one of two racing refreshes win, and revokes on reuse', async () => {
    const fields = newAccountFields();
    await createUser(ctx, fields);
    const first = await login(ctx, fields.email, fields.password, false);
    const racing = await Promise.allSettled([refresh(ctx, first.refresh_token), refresh(ctx, first.refresh_token)]);
    expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const winner = racing.find((r) => r.status === 'fulfilled');
    // The loser's attempt counts as reuse: the winner's successor is revoked with the family.
    expect(await codeOf(refresh(ctx, (winner as PromiseFulfilledResult<{ refresh_token: string }>).value.refresh_token))).toBe('invalid_refresh_token');

    const other = await login(ctx, fields.email, fields.password, true);
    const next = await refresh(ctx, other.refresh_token);
    await logout(ctx, next.refresh_token);
    expect(await codeOf(refresh(ctx, next.refresh_token))).toBe('invalid_refresh_token');
  });

  it.skipIf(skip)('pages through users in a stable order', async () => {
    for (let i = 0; i < 3; i++) await createUser(ctx, newAccountFields());
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await listUsers(ctx, 2, cursor);
      ids.push(...page.users.map((u) => u.id));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    const all = await listUsers(ctx, 200);
    expect(ids).toEqual(all.users.map((u) => u.id));
    expect(all.next_cursor).toBeNull();
  });

  it.skipIf(skip)('two admins demoting or deactivating each other at once leave one admin: the caller\'s rights are read again under lock', async () => {
    for (const change of [{ is_admin: false }, { is_active: false }]) {
      const [a, b] = await Promise.all([createUser(ctx, newAccountFields()), createUser(ctx, newAccountFields())]);
      await Promise.all([a, b].map((u) => changeUser(ctx, u.id, { is_admin: true }, BY_SERVICE_KEY)));
      // Both passed the guard as admins; each acts on the other.
      const asAdmin = (userId: string): Principal => ({ userId, isAdmin: true, via: 'jwt' });
      const outcomes = await Promise.all([codeOf(changeUser(ctx, b.id, change, asAdmin(a.id))), codeOf(changeUser(ctx, a.id, change, asAdmin(b.id)))]);
      expect(outcomes.sort(), JSON.stringify(change)).toEqual(['admin_required', 'no error']);
      const still = await ctx.db.kysely.selectFrom('users').select('id').where('id', 'in', [a.id, b.id]).where('is_admin', '=', 1).where('is_active', '=', 1).execute();
      expect(still).toHaveLength(1);
      // One after the other, as a guard that read the first change would have refused the second.
      const [c, d] = await Promise.all([createUser(ctx, newAccountFields()), createUser(ctx, newAccountFields())]);
      await Promise.all([c, d].map((u) => changeUser(ctx, u.id, { is_admin: true }, BY_SERVICE_KEY)));
      await changeUser(ctx, d.id, change, asAdmin(c.id));
      expect(await codeOf(changeUser(ctx, c.id, change, asAdmin(d.id)))).toBe('admin_required');
    }
  });

  it.skipIf(skip)('finds a key by its hash only while its owner is active, and deletes everything with the account', async () => {
    const user = await createUser(ctx, newAccountFields());
    const key = await createApiKey(ctx, as(user.id), 'k');
    expect((await findKeyOwner(ctx.db, sha256Hex(key.key)))?.id).toBe(user.id);
    await changeUser(ctx, user.id, { is_active: false }, BY_SERVICE_KEY);
    expect(await findKeyOwner(ctx.db, sha256Hex(key.key))).toBeUndefined();
    await changeUser(ctx, user.id, { is_active: true }, BY_SERVICE_KEY);
    await deleteMe(ctx, as(user.id));
    expect(await findKeyOwner(ctx.db, sha256Hex(key.key))).toBeUndefined();
    expect(await ctx.db.kysely.selectFrom('users').select('id').where('id', '=', user.id).executeTakeFirst()).toBeUndefined();
  });

  it.skipIf(skip)('asks for the current password before changing the email', async () => {
    const fields = newAccountFields();
    const user = await createUser(ctx, fields);
    expect(await codeOf(updateMe(ctx, as(user.id), { email: `x${fields.email}` }))).toBe('validation_error');
    expect(await codeOf(updateMe(ctx, as(user.id), { email: `x${fields.email}`, current_password: 'nope-nope' }))).toBe('wrong_password');
    expect((await updateMe(ctx, as(user.id), { email: `x${fields.email}`, current_password: fields.password })).email).toBe(`x${fields.email}`);
    expect(await codeOf(updateMe(ctx, { userId: SERVICE_PRINCIPAL_ID, isAdmin: true, via: 'static_key' }, { username: 'abc' }))).toBe('no_account');
  });

  it.skipIf(skip)('takes over an account someone registered with ADMIN_EMAIL with none of its sessions or keys; a restart ends nothing', async () => {
    const email = `Taken-${newAccountFields().email}`;
    const squatter = await createUser(ctx, { ...newAccountFields(), email, password: 'squatter-password' });
    const session = await login(ctx, email, 'squatter-password', true);
    const key = await createApiKey(ctx, as(squatter.id), 'persist');
    const env = { ADMIN_EMAIL: email.toLowerCase(), ADMIN_PASSWORD: 'operator-password' };

    await bootstrapAdmin(await backend.open(env));
    const row = await ctx.db.kysely.selectFrom('users').selectAll().where('id', '=', squatter.id).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ is_admin: 1, is_active: 1, credentials_epoch: 1 });
    expect(await findKeyOwner(ctx.db, sha256Hex(key.key))).toBeUndefined();
    expect(await codeOf(refresh(ctx, session.refresh_token))).toBe('invalid_refresh_token');
    expect(await codeOf(login(ctx, email, 'squatter-password', false))).toBe('invalid_credentials');

    // The operator's own session and key survive the next start, which finds nothing to change.
    const admin = await login(ctx, email, 'operator-password', false);
    const adminKey = await createApiKey(ctx, { userId: squatter.id, isAdmin: true, via: 'jwt' }, 'ops');
    await bootstrapAdmin(await backend.open(env));
    expect(await findKeyOwner(ctx.db, sha256Hex(adminKey.key))).toMatchObject({ id: squatter.id, isAdmin: true });
    expect((await refresh(ctx, admin.refresh_token)).access_token).toBeTruthy();
    const after = await ctx.db.kysely.selectFrom('users').select('credentials_epoch').where('id', '=', squatter.id).executeTakeFirstOrThrow();
    expect(after.credentials_epoch).toBe(1);
  });

  it.skipIf(skip)('refuses a refresh token issued in an earlier credentials epoch even when it was never revoked (a login that raced a password change)', async () => {
    const fields = newAccountFields();
    const user = await createUser(ctx, fields);
    const session = await login(ctx, fields.email, fields.password, false);
    // What a login that read the account just before a password change leaves: a live token of the old epoch.
    await ctx.db.kysely.updateTable('users').set({ credentials_epoch: 1 }).where('id', '=', user.id).execute();
    expect(await codeOf(refresh(ctx, session.refresh_token))).toBe('invalid_refresh_token');
    const fresh = await login(ctx, fields.email, fields.password, false);
    expect((await refresh(ctx, fresh.refresh_token)).refresh_token).toBeTruthy();
  });

  it.skipIf(skip)('makes no API key for a request whose token the account left behind while it ran (a new password or a deactivation)', async () => {
    const fields = newAccountFields();
    const user = await createUser(ctx, fields);
    // What the guard let in: a token of epoch 0. Then the change commits, before the key is made.
    const principal: Principal = { userId: user.id, isAdmin: false, via: 'jwt', credentialsEpoch: 0 };
    await updateMe(ctx, as(user.id), { current_password: fields.password, password: 'a-new-password-1' });
    expect(await codeOf(createApiKey(ctx, principal, 'late'))).toBe('token_revoked');
    const deactivated = await createUser(ctx, newAccountFields());
    await changeUser(ctx, deactivated.id, { is_active: false }, BY_SERVICE_KEY);
    expect(await codeOf(createApiKey(ctx, { userId: deactivated.id, isAdmin: false, via: 'jwt', credentialsEpoch: 0 }, 'late'))).toBe('token_revoked');
    expect(await ctx.db.kysely.selectFrom('api_keys').select('id').where('user_id', 'in', [user.id, deactivated.id]).execute()).toEqual([]);
    // A token of the account's epoch now makes one.
    expect((await createApiKey(ctx, { ...principal, credentialsEpoch: 1 }, 'fresh')).key).toMatch(/^kiln_/);
  });

  it.skipIf(skip)('makes an API key racing a password change either before it (and the change deletes it) or not at all', async () => {
    const fields = newAccountFields();
    const user = await createUser(ctx, fields);
    const principal: Principal = { userId: user.id, isAdmin: false, via: 'jwt', credentialsEpoch: 0 };
    // A change in progress: its transaction has ended the credentials and not committed yet.
    let commit!: () => void;
    const committed = new Promise<void>((resolve) => (commit = resolve));
    let changing!: () => void;
    const changed = new Promise<void>((resolve) => (changing = resolve));
    const change = ctx.db.kysely.transaction().execute(async (tx) => {
      await tx.updateTable('users').set({ password_hash: 'changed' }).where('id', '=', user.id).execute();
      await endCredentials(tx, user.id, new Date().toISOString());
      changing();
      await committed;
    });
    await changed;
    const minting = createApiKey(ctx, principal, 'racing');
    const outcome = codeOf(minting);
    await new Promise((resolve) => setTimeout(resolve, 200));
    commit();
    await change;
    expect(await outcome).toBe('token_revoked');
    expect(await ctx.db.kysely.selectFrom('api_keys').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
  });

  it.skipIf(skip)('bootstraps the admin once when two processes start together, and follows ADMIN_PASSWORD changes', async () => {
    const env = { ADMIN_EMAIL: 'Root@Example.com', ADMIN_PASSWORD: 'first-password' };
    const [a, b] = [await backend.open(env), await backend.open(env)];
    await Promise.all([bootstrapAdmin(a), bootstrapAdmin(b)]);
    await bootstrapAdmin(a);
    const rows = await ctx.db.kysely.selectFrom('users').selectAll().where('email_lower', '=', 'root@example.com').execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ is_admin: 1, is_active: 1 });
    await login(ctx, 'root@example.com', 'first-password', false);

    const changed = await backend.open({ ...env, ADMIN_PASSWORD: 'second-password' });
    await bootstrapAdmin(changed);
    expect(await codeOf(login(ctx, 'root@example.com', 'first-password', false))).toBe('invalid_credentials');
    await login(ctx, 'root@example.com', 'second-password', false);
  });
});

describe.each(backends)('pruning ended sessions on %s', (_name, makeBackend, skip) => {
  let backend: Backend;
  let ctx: Context;
  const clock = new TestClock();

  beforeAll(async () => {
    if (skip) return;
    backend = await makeBackend();
    ctx = await backend.open({ SHORT_REFRESH_TOKEN_LIFETIME: '60' }, { clock });
  });
  afterAll(async () => {
    if (!skip) await backend.dispose();
  });

  const rowOf = (token: string) => ctx.db.kysely.selectFrom('refresh_tokens').select(['id', 'revoked_at']).where('token_hash', '=', sha256Hex(token)).executeTakeFirst();

  it.skipIf(skip)('forgets a used token a day after it expired and a session a day after it ended, never what a live session needs', async () => {
    const fields = newAccountFields();
    const user = await createUser(ctx, fields);
    // A session revoked while its successor was being written (the race isFamilyRevoked closes):
    // the revoked token expired two days ago, the successor is live and must stay dead.
    const { credentials_epoch: epoch } = await ctx.db.kysely.selectFrom('users').select('credentials_epoch').where('id', '=', user.id).executeTakeFirstOrThrow();
    const raced = { revoked: 'raced-revoked-token', successor: 'raced-successor-token', family: `family-${user.id}` };
    const at = (hours: number) => new Date(clock.now().getTime() + hours * 3600_000).toISOString();
    const token = (plain: string, expiresInHours: number, revoked: boolean) =>
      insertRefreshToken(ctx.db.kysely, { id: `${plain}-${user.id}`, user_id: user.id, family_id: raced.family, token_hash: sha256Hex(plain), expires_at: at(expiresInHours), used_at: revoked ? at(-49) : null, revoked_at: revoked ? at(-49) : null, epoch: Number(epoch), created_at: at(-49) });
    await token(raced.revoked, -48, true);
    await token(raced.successor, 1 + 26, false);
    const ended = await login(ctx, fields.email, fields.password, false);
    await logout(ctx, ended.refresh_token);
    // A session kept alive for 25 h 25 min: every token lives 60 min, each refresh uses one up.
    const first = await login(ctx, fields.email, fields.password, false);
    let pair = first;
    let second = '';
    for (let i = 0; i < 30; i++) {
      clock.advanceMinutes(50);
      pair = await refresh(ctx, pair.refresh_token);
      if (i === 0) second = pair.refresh_token;
    }
    clock.advanceMinutes(25);
    // Logged out just now: revoked, but not expired.
    const revoked = await login(ctx, fields.email, fields.password, false);
    await logout(ctx, revoked.refresh_token);

    // The day before now began at 85 min: the first token expired before it (60 min), the second after (110 min).
    expect(ENDED_TOKEN_KEEP_MS).toBe(24 * 60 * 60_000);
    const other = await backend.open({}, { clock });
    const [ours, theirs] = [capturingLog<{ msg: string; deleted?: unknown }>(), capturingLog<{ msg: string; deleted?: unknown }>()];
    const [a, b] = await Promise.all([pruneEndedSessions({ ...ctx, log: ours.log }), pruneEndedSessions({ ...other, log: theirs.log })]);
    expect(a + b).toBeGreaterThanOrEqual(2);
    // Each run that deleted logs its count, and the count survives the log's scrubbing of
    // secret-looking keys (under a key named "tokens" it read "[redacted]").
    const logged = [...ours.lines, ...theirs.lines].filter((line) => line.msg === 'pruned the refresh tokens of ended sessions');
    expect(logged.map((line) => line.deleted).sort()).toEqual([a, b].filter((n) => n > 0).sort());

    expect(await rowOf(first.refresh_token)).toBeUndefined();
    expect(await rowOf(ended.refresh_token)).toBeUndefined();
    expect(await rowOf(second)).toBeDefined();
    expect(await rowOf(revoked.refresh_token)).toMatchObject({ revoked_at: expect.any(String) });
    expect(await rowOf(raced.revoked)).toBeDefined();
    expect(await pruneEndedSessions(ctx)).toBe(0);
    expect(await codeOf(refresh(ctx, raced.successor))).toBe('invalid_refresh_token');

    // A forgotten token is a stranger's: refused, and the session it came from goes on.
    expect(await codeOf(refresh(ctx, first.refresh_token))).toBe('invalid_refresh_token');
    pair = await refresh(ctx, pair.refresh_token);
    expect(await codeOf(refresh(ctx, revoked.refresh_token))).toBe('invalid_refresh_token');
    // A used token still remembered is a reuse: the session ends.
    expect(await codeOf(refresh(ctx, second))).toBe('refresh_token_reused');
    expect(await codeOf(refresh(ctx, pair.refresh_token))).toBe('invalid_refresh_token');
  });
});
