/**
 * The one ordered list of migrations, for SQLite and PostgreSQL alike.
 * A new migration is a new file here and one line in this list.
 */
import type { Migration } from 'kysely';
import * as m0001 from './0001_core.js';
import * as m0003 from './0003_jobs.js';
import * as m0004 from './0004_custom_orders.js';
import * as m0005 from './0005_ai_edits.js';
import * as m0006 from './0006_product_images.js';
import * as m0007 from './0007_shop.js';
import * as m0008 from './0008_payments.js';
import * as m0009 from './0009_credentials_epoch.js';
import * as m0010 from './0010_orders_pending.js';
import * as m0011 from './0011_housekeeping.js';
import * as m0012 from './0012_ai_edit_retention.js';
import * as m0013 from './0013_listing_indexes.js';

export const migrations: Record<string, Migration> = {
  '0001_core': m0001,
  '0003_jobs': m0003,
  '0004_custom_orders': m0004,
  '0005_ai_edits': m0005,
  '0006_product_images': m0006,
  '0007_shop': m0007,
  '0008_payments': m0008,
  '0009_credentials_epoch': m0009,
  '0010_orders_pending': m0010,
  '0011_housekeeping': m0011,
  '0012_ai_edit_retention': m0012,
  '0013_listing_indexes': m0013,
};
