import { type Kysely } from 'kysely';

// Ending every credential of an account at once (docs/auth.md, "Ending an
// account's credentials"): a password change, a deactivation, or the admin
// bootstrap taking an account over adds one to its epoch. Access tokens and
// refresh tokens carry the epoch they were issued in and stop working once
// it is not the account's any more. Rows from before this migration are in
// epoch 0, as are tokens issued before it (they carry none).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('credentials_epoch', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('refresh_tokens').addColumn('epoch', 'integer', (c) => c.notNull().defaultTo(0)).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('refresh_tokens').dropColumn('epoch').execute();
  await db.schema.alterTable('users').dropColumn('credentials_epoch').execute();
}
