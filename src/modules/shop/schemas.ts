/** Request and answer shapes of the shop's routes (docs/shop.md); they feed validation and /openapi.json alike. */
import { Type, type Static } from '@sinclair/typebox';
import { SIZE_NAMES } from '../../images/variants.js';
import { ORDER_STATUSES } from './order-status.js';

const Money = Type.String({ description: 'A decimal amount in the currency, exact: "49.90"', examples: ['49.90'] });
/** A price as a client may send it: a decimal string, or a JSON number read as the decimal it was written as. */
const MoneyInput = Type.Union([Type.String({ maxLength: 32 }), Type.Number()], { description: 'A decimal amount: "49.90" (or the JSON number 49.90)' });
const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code, upper case' });
const Name = Type.String({ minLength: 1, maxLength: 200 });
const Description = Type.String({ maxLength: 5000 });
const Category = Type.Union([Type.String({ minLength: 1, maxLength: 100 }), Type.Null()]);
const EanInput = Type.Union([Type.String({ maxLength: 64 }), Type.Null()], { description: 'GTIN-8, UPC-A, EAN-13 or GTIN-14 with its check digit' });
const Stock = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });

export const ProductParams = Type.Object({ product_id: Type.String({ maxLength: 64 }) });
export const ProductImageParams = Type.Object({ product_id: Type.String({ maxLength: 64 }), image_id: Type.String({ maxLength: 64 }) });

export const ProductBody = Type.Object(
  {
    name: Name,
    description: Type.Optional(Description),
    price: MoneyInput,
    currency: Type.Optional(Currency),
    category: Type.Optional(Category),
    ean_code: Type.Optional(EanInput),
    stock_quantity: Type.Optional(Stock),
    is_active: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ProductBody = Static<typeof ProductBody>;

/** PUT changes the fields it names and keeps the others. */
export const ProductChanges = Type.Partial(ProductBody, { additionalProperties: false, minProperties: 1 });
export type ProductChanges = Static<typeof ProductChanges>;

export const ProductListQuery = Type.Object({
  category: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
});
export type ProductListQuery = Static<typeof ProductListQuery>;

export const ImageSizeQuery = Type.Object({
  size: Type.Optional(Type.Union(SIZE_NAMES.map((s) => Type.Literal(s)), { default: 'original' })),
});

export const ProductImage = Type.Object({
  image_id: Type.String(),
  source: Type.Union([Type.Literal('upload'), Type.Literal('ean')]),
  ean_code: Type.Union([Type.String(), Type.Null()]),
  width: Type.Integer(),
  height: Type.Integer(),
  created_at: Type.String({ format: 'date-time' }),
  urls: Type.Record(Type.String(), Type.String(), { description: 'size -> URL; a barcode picture has no `game` size' }),
});

export const Product = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  price: Money,
  currency: Type.String(),
  category: Type.Union([Type.String(), Type.Null()]),
  ean_code: Type.Union([Type.String(), Type.Null()]),
  image_url: Type.Union([Type.String(), Type.Null()], { description: "The first picture's medium size, or null" }),
  images: Type.Array(ProductImage),
  stock_quantity: Type.Integer(),
  is_active: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const ProductPage = Type.Object({
  products: Type.Array(Product),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});

export const ProductImageAnswer = Type.Intersect([Type.Object({ product_id: Type.String() }), ProductImage]);

export const EanBody = Type.Object({ ean_code: Type.Union([Type.String({ maxLength: 64 }), Type.Integer({ minimum: 0 })]) }, { additionalProperties: false });

export const EanJobAnswer = Type.Object({
  job_id: Type.String(),
  status: Type.String(),
  ean_code: Type.String(),
  product_id: Type.String(),
});

export const OrderStatus = Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s)));

/** The most of one product one order takes, whether named once or on several lines. */
export const MAX_LINE_QUANTITY = 10_000;

export const OrderBody = Type.Object(
  {
    items: Type.Array(
      Type.Object({ product_id: Type.String({ minLength: 1, maxLength: 64 }), quantity: Type.Integer({ minimum: 1, maximum: MAX_LINE_QUANTITY }) }, { additionalProperties: false }),
      { minItems: 1, maxItems: 100 },
    ),
    custom_order_id: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])),
  },
  { additionalProperties: false },
);
export type OrderBody = Static<typeof OrderBody>;

export const OrderParams = Type.Object({ order_id: Type.String({ maxLength: 64 }) });

export const OrderListQuery = Type.Object({
  all: Type.Optional(Type.Boolean({ description: 'Admins: every customer\'s orders' })),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
});
export type OrderListQuery = Static<typeof OrderListQuery>;

export const StatusBody = Type.Object({ status: OrderStatus }, { additionalProperties: false });

export const Order = Type.Object({
  id: Type.String(),
  user_id: Type.String(),
  items: Type.Array(Type.Object({ product_id: Type.String(), name: Type.String(), unit_price: Money, quantity: Type.Integer() })),
  total_amount: Money,
  currency: Type.String(),
  status: OrderStatus,
  stripe_payment_intent_id: Type.Union([Type.String(), Type.Null()]),
  custom_order_id: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const OrderPage = Type.Object({
  orders: Type.Array(Order),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});
