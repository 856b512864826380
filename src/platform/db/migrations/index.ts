/**
 * The one ordered list of migrations, for SQLite and PostgreSQL alike.
 * A new migration is a new file here and one line in this list.
 */
import type { Migration } from 'kysely';
import * as m0001 from './0001_core.js';

export const migrations: Record<string, Migration> = {
  '0001_core': m0001,
};
