import { type Kysely } from 'kysely';

// The shop (docs/shop.md): products with their pictures, and orders of them.
// Money is integer minor units (cents) of the row's currency; JSON shows it as
// a decimal string. Stock lives on the product row, so reserving it is one
// conditional UPDATE that two buyers cannot both win.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('products')
    .addColumn('product_id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('price_minor', 'bigint', (c) => c.notNull())
    .addColumn('currency', 'text', (c) => c.notNull())
    .addColumn('category', 'text')
    .addColumn('ean_code', 'text')
    .addColumn('stock_quantity', 'integer', (c) => c.notNull())
    .addColumn('is_active', 'integer', (c) => c.notNull())
    /** Next picture-order number; bumped under the product's row lock. */
    .addColumn('next_image_seq', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  // Listings: newest first, all of them (admin) or the active ones, optionally of one category.
  await db.schema.createIndex('products_created').on('products').columns(['created_at', 'product_id']).execute();
  await db.schema.createIndex('products_category_created').on('products').columns(['category', 'created_at', 'product_id']).execute();

  await db.schema
    .createTable('shop_product_images')
    .addColumn('image_id', 'text', (c) => c.primaryKey())
    .addColumn('product_id', 'text', (c) => c.notNull().references('products.product_id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    // 'upload': blobs of its own under shop/<image_id>/; 'ean': the barcode's shared picture (product_images).
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('ean_code', 'text')
    // The id its blob keys are made of: its own for an upload, the barcode picture's (product_images.image_id) for 'ean'.
    .addColumn('blob_id', 'text', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('bytes', 'integer', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('variants', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('shop_product_images_product_seq').on('shop_product_images').columns(['product_id', 'seq']).unique().execute();
  // A barcode's picture is attached to a product once, however often its job runs (uploads have no ean_code: NULLs never collide).
  await db.schema.createIndex('shop_product_images_product_ean').on('shop_product_images').columns(['product_id', 'ean_code']).unique().execute();

  await db.schema
    .createTable('orders')
    .addColumn('order_id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('total_minor', 'bigint', (c) => c.notNull())
    .addColumn('currency', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('stripe_payment_intent_id', 'text')
    .addColumn('custom_order_id', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('orders_user_created').on('orders').columns(['user_id', 'created_at', 'order_id']).execute();
  await db.schema.createIndex('orders_created').on('orders').columns(['created_at', 'order_id']).execute();

  await db.schema
    .createTable('order_items')
    .addColumn('order_id', 'text', (c) => c.notNull().references('orders.order_id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('product_id', 'text', (c) => c.notNull())
    // What the buyer saw: the name and price at the time of the order, whatever the product becomes.
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('unit_price_minor', 'bigint', (c) => c.notNull())
    .addColumn('quantity', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('order_items_pk', ['order_id', 'seq'])
    .execute();
  // "Does any order refer to this product?" decides a hard or a soft delete.
  await db.schema.createIndex('order_items_product').on('order_items').column('product_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('order_items').ifExists().execute();
  await db.schema.dropTable('orders').ifExists().execute();
  await db.schema.dropTable('shop_product_images').ifExists().execute();
  await db.schema.dropTable('products').ifExists().execute();
}
