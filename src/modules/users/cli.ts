/**
 * `kiln users create --email E --username U [--password P] [--admin]`:
 * makes an account from the command line (the first admin, typically).
 * The password comes from KILN_PASSWORD when not given, so it need not
 * appear in the shell history or the process list.
 */
import { parseArgs } from 'node:util';
import type { Config } from '../../config.js';
import { createContext } from '../../context.js';
import { DomainError, UsageError } from '../../errors.js';
import { createUser, type UserView } from './service.js';

export const USERS_USAGE = 'kiln users create --email E --username U [--password P] [--admin]';

/** Runs `kiln users <args>` and returns the created user; a bad argument or rule is a UsageError. */
export async function runUsersCommand(config: Config, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<UserView> {
  const [sub, ...rest] = args;
  if (sub !== 'create') throw new UsageError(`usage: ${USERS_USAGE}`);
  let values: { email?: string; username?: string; password?: string; admin?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { email: { type: 'string' }, username: { type: 'string' }, password: { type: 'string' }, admin: { type: 'boolean', default: false } },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\nusage: ${USERS_USAGE}`);
  }
  const password = values.password ?? env.KILN_PASSWORD;
  if (!values.email || !values.username) throw new UsageError(`--email and --username are required\nusage: ${USERS_USAGE}`);
  if (!password) throw new UsageError('give --password or set KILN_PASSWORD');

  const ctx = await createContext(config, { logTo: 'stderr', oneShot: true });
  try {
    return await createUser(ctx, { email: values.email, username: values.username, password }, { admin: values.admin === true });
  } catch (err) {
    if (err instanceof DomainError) throw new UsageError(err.detail);
    throw err;
  } finally {
    await ctx.close();
  }
}
