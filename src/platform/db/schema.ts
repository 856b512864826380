/**
 * Table types for Kysely. Booleans are stored as integers (0/1) on both
 * SQLite and PostgreSQL, times as ISO 8601 UTC strings, so one set of
 * migrations and one set of queries serve both dialects.
 */
import type { Generated } from 'kysely';

export type Flag = 0 | 1;

export interface UsersTable {
  id: string;
  email: string;
  email_lower: string;
  username: string;
  password_hash: string;
  is_active: Flag;
  is_admin: Flag;
  /** One more at each password change, deactivation or bootstrap takeover; tokens of an older epoch are dead. */
  credentials_epoch: Generated<number>;
  created_at: string;
  updated_at: string;
}

export interface RefreshTokensTable {
  id: string;
  user_id: string;
  family_id: string;
  token_hash: string;
  expires_at: string;
  used_at: string | null;
  revoked_at: string | null;
  /** The account's credentials_epoch when the session began. */
  epoch: number;
  created_at: string;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  key_hash: string;
  created_at: string;
  last_used_at: string | null;
}

export interface ProjectsTable {
  project_id: string;
  owner_id: string;
  primary_image_id: string | null;
  /** Next upload-order number; bumped under the project's row lock. */
  next_seq: number;
  created_at: string;
  updated_at: string;
}

export interface GalleryImagesTable {
  image_id: string;
  project_id: string;
  seq: number;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  /** JSON: { [size]: { width, height, bytes, etag } } */
  variants: string;
  created_at: string;
}

/** Key/value facts the service keeps about itself (generated secrets and the like). */
export interface SettingsTable {
  key: string;
  value: string;
}

/** Background jobs (platform/jobs). JSON columns are text; times ISO strings, compared as text. */
export interface JobsTable {
  job_id: string;
  type: string;
  status: string;
  progress: number;
  attempts: number;
  max_attempts: number;
  input: string;
  result: string | null;
  error: string | null;
  user_id: string | null;
  dedupe_key: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** A queued job is not claimed before this time (retry backoff). */
  run_after: string;
  locked_by: string | null;
  /** Lease end: a processing job whose lease ran out is claimed again (its runner died). */
  locked_until: string | null;
  /** Times the job was taken over after its runner died; bounded so a job that kills its process stops. */
  recoveries: number;
}

/** Custom orders (modules/custom-orders). `history` is JSON: [{status, at, by}]. */
export interface CustomOrdersTable {
  order_id: string;
  user_id: string;
  pet_name: string | null;
  pet_type: string | null;
  notes: string | null;
  status: string;
  history: string;
  created_at: string;
  updated_at: string;
}

/** One photo of a custom order. `variants` is JSON { [size]: { width, height, bytes, etag } }; `quality` JSON too. */
export interface CustomOrderFilesTable {
  file_id: string;
  order_id: string;
  seq: number;
  original_filename: string;
  stored_filename: string;
  content_type: string;
  bytes: number;
  width: number;
  height: number;
  sha256: string;
  variants: string;
  quality: string;
  created_at: string;
}

/** One product picture per normalised barcode (modules/product-images), shared by every user. */
export interface ProductImagesTable {
  ean_code: string;
  /** Server-made id the blob keys are built from (`product/<image_id>/<size>.jpg`). */
  image_id: string;
  provider: string;
  product_name: string | null;
  source_url: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  /** JSON: { [size]: { width, height, bytes, etag } } */
  variants: string;
  job_id: string;
  fetched_at: string;
}

/** Single-flight lease: the job asking the provider for a barcode right now, or the permanent error it ended with. */
export interface ProductImageFetchesTable {
  ean_code: string;
  job_id: string;
  locked_until: string;
  /** JSON { code, detail } once the holder failed for good; waiting jobs adopt it. */
  error: string | null;
  updated_at: string;
}

/** AI edits (modules/ai-edits): an upload or a job's result. `variants` is JSON { [size]: { width, height, bytes, etag } }. */
export interface AiFilesTable {
  file_id: string;
  owner_id: string;
  kind: 'upload' | 'result';
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  variants: string;
  created_at: string;
}

/** One AI edit: initiated, then booked (processing) with its two files and prompt, then completed or failed. */
export interface AiProcessesTable {
  init_id: string;
  owner_id: string;
  status: 'initiated' | 'processing' | 'completed' | 'failed';
  source_file_id: string | null;
  target_file_id: string | null;
  prompt: string | null;
  job_id: string | null;
  result_file_id: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

/** A product of the shop (modules/shop). Money in integer minor units of `currency`; bigint columns arrive as number or string. */
export interface ProductsTable {
  product_id: string;
  name: string;
  description: string;
  price_minor: number | string;
  currency: string;
  category: string | null;
  ean_code: string | null;
  stock_quantity: number;
  is_active: Flag;
  next_image_seq: number;
  created_at: string;
  updated_at: string;
}

/** A picture of a product: uploaded (blobs under shop/<image_id>/) or the barcode's shared one (`ean`). `variants` JSON. */
export interface ShopProductImagesTable {
  image_id: string;
  product_id: string;
  seq: number;
  source: 'upload' | 'ean';
  ean_code: string | null;
  /** The id the blob keys are made of: image_id for an upload, the barcode picture's image_id for 'ean'. */
  blob_id: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  variants: string;
  created_at: string;
}

/** An order of products. Status: pending, confirmed, shipped, delivered, cancelled. */
export interface OrdersTable {
  order_id: string;
  user_id: string;
  total_minor: number | string;
  currency: string;
  status: string;
  stripe_payment_intent_id: string | null;
  custom_order_id: string | null;
  created_at: string;
  updated_at: string;
}

/** One line of an order, as the buyer saw it when ordering. */
export interface OrderItemsTable {
  order_id: string;
  seq: number;
  product_id: string;
  name: string;
  unit_price_minor: number | string;
  quantity: number;
}

/**
 * A Stripe PaymentIntent made for an order (modules/payments). `status` is
 * the intent's as Stripe last told us; `amount_minor` is the order's total
 * when it was made (bigint: number or string).
 */
export interface PaymentsTable {
  payment_id: string;
  order_id: string;
  user_id: string;
  intent_id: string;
  amount_minor: number | string;
  currency: string;
  status: string;
  last_error_code: string | null;
  last_error_message: string | null;
  created_at: string;
  updated_at: string;
}

/** Stripe webhook events already applied: the same event delivered again changes nothing. */
export interface PaymentEventsTable {
  event_id: string;
  type: string;
  received_at: string;
}

export interface Database {
  users: UsersTable;
  refresh_tokens: RefreshTokensTable;
  api_keys: ApiKeysTable;
  projects: ProjectsTable;
  gallery_images: GalleryImagesTable;
  settings: SettingsTable;
  jobs: JobsTable;
  custom_orders: CustomOrdersTable;
  custom_order_files: CustomOrderFilesTable;
  ai_files: AiFilesTable;
  ai_processes: AiProcessesTable;
  product_images: ProductImagesTable;
  product_image_fetches: ProductImageFetchesTable;
  products: ProductsTable;
  shop_product_images: ShopProductImagesTable;
  orders: OrdersTable;
  order_items: OrderItemsTable;
  payments: PaymentsTable;
  payment_events: PaymentEventsTable;
}

// Generated is re-exported for later tables with database-assigned columns.
export type { Generated };
