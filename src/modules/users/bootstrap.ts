/**
 * The first admin, from ADMIN_EMAIL / ADMIN_PASSWORD, made or brought up to
 * date at every start. Safe when several processes start together: the
 * insert ignores a conflict and everyone then updates the one row.
 */
import { hashPassword, verifyPassword } from '../../auth/passwords.js';
import { isoNow } from '../../clock.js';
import { ConfigError } from '../../config.js';
import type { Context } from '../../context.js';
import { DomainError } from '../../errors.js';
import { newId } from '../../ids.js';
import { checkAccountFields } from './account-rules.js';
import * as repo from './repo.js';

function usernameFor(email: string, attempt: number): string {
  const local = (email.split('@')[0] ?? '').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 40);
  const base = local.length >= 3 ? local : 'admin';
  return attempt === 0 ? base : `${base}-${newId().slice(0, 6)}`;
}

export async function bootstrapAdmin(ctx: Context): Promise<void> {
  const { adminEmail, adminPassword } = ctx.config;
  if (adminEmail === undefined && adminPassword === undefined) return;
  if (adminEmail === undefined) throw new ConfigError('ADMIN_EMAIL', 'must be set when ADMIN_PASSWORD is set');
  if (adminPassword === undefined) throw new ConfigError('ADMIN_PASSWORD', 'must be set when ADMIN_EMAIL is set');
  try {
    checkAccountFields({ email: adminEmail, password: adminPassword });
  } catch (err) {
    const variable = err instanceof DomainError && err.detail.startsWith('email') ? 'ADMIN_EMAIL' : 'ADMIN_PASSWORD';
    throw new ConfigError(variable, err instanceof Error ? err.message : String(err));
  }

  const q = ctx.db.kysely;
  const emailLower = adminEmail.toLowerCase();
  let user = await repo.findUserByEmail(q, emailLower);
  // The email's local part may already be someone's username: then try a suffixed one.
  for (let attempt = 0; !user && attempt < 3; attempt++) {
    const now = isoNow(ctx.clock);
    await repo.insertUserIfAbsent(q, {
      id: newId(),
      email: adminEmail,
      email_lower: emailLower,
      username: usernameFor(adminEmail, attempt),
      password_hash: await hashPassword(adminPassword),
      is_active: 1,
      is_admin: 1,
      created_at: now,
      updated_at: now,
    });
    user = await repo.findUserByEmail(q, emailLower);
  }
  if (!user) throw new Error('could not create the ADMIN_EMAIL account');

  const passwordKnown = await verifyPassword(user.password_hash, adminPassword);
  if (user.is_admin === 1 && user.is_active === 1 && passwordKnown) return;
  const now = isoNow(ctx.clock);
  const passwordHash = passwordKnown ? undefined : await hashPassword(adminPassword);
  // Taking an account over (someone registered ADMIN_EMAIL first) or setting a new ADMIN_PASSWORD
  // ends its credentials: no session, token or API key from before carries the admin rights on.
  const takenOver = user.is_admin !== 1 || !passwordKnown;
  const userId = user.id;
  await q.transaction().execute(async (tx) => {
    await repo.updateUser(tx, userId, { is_admin: 1, is_active: 1, ...(passwordHash === undefined ? {} : { password_hash: passwordHash }), updated_at: now });
    if (takenOver) await repo.endCredentials(tx, userId, now);
  });
  ctx.log.info({ email: adminEmail, credentialsEnded: takenOver }, 'admin account brought up to date from ADMIN_EMAIL');
}
