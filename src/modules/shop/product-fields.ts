/**
 * A product's fields as a request sends them, read into what is stored: a
 * trimmed name, an ISO 4217 currency, a price in exact minor units, a
 * checked barcode. Each refusal is a 422 naming the field.
 */
import { ValidationFailed } from '../../errors.js';
import { parseEan } from '../product-images/service.js';
import { isCurrency, MoneyError, parseMoney } from './money.js';

/** The currency a request names, or 422 naming the field when it is not an ISO 4217 code. */
export function currencyOf(code: string | undefined, fallback: string): string {
  if (code === undefined) return fallback;
  if (!isCurrency(code)) throw new ValidationFailed(`currency "${code}" is not an ISO 4217 code.`, [{ field: 'body.currency', message: 'must be an ISO 4217 code such as "EUR"' }], 'invalid_currency');
  return code;
}

/** Minor units of a price from a request, or 422 naming the field. */
export function priceOf(value: string | number, currency: string): number {
  try {
    return parseMoney(value, currency);
  } catch (err) {
    if (!(err instanceof MoneyError)) throw err;
    throw new ValidationFailed(`price ${err.message}.`, [{ field: 'body.price', message: err.message }], 'invalid_price');
  }
}

/** The name as shown, trimmed; one of spaces only is a 422. */
export function nameOf(value: string): string {
  const name = value.trim();
  if (!name) throw new ValidationFailed('name must not be blank.', [{ field: 'body.name', message: 'is blank' }]);
  return name;
}

export function eanOf(value: string | null | undefined): string | null {
  return value === null || value === undefined ? null : parseEan(value, 'body.ean_code');
}
