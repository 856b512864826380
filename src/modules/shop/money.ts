/**
 * Money is exact: integer minor units of a currency in storage and in every
 * sum, a decimal string ("49.90") in JSON. A price never passes through a
 * binary float: a JSON number is taken as the decimal text it was written as
 * (JavaScript prints a parsed number back as its shortest form: 49.90 is
 * "49.9"), then read digit by digit.
 *
 * Minor units follow Stripe's, so an order's total is a payment's `amount`
 * as it stands: two decimals, except the zero-decimal and three-decimal
 * currencies below.
 */
const ZERO_DECIMAL = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/**
 * The smallest step Stripe charges in, in minor units, where it is more than
 * one: ISK keeps two decimals in the API but card networks take whole krónur
 * only (since April 2023; Stripe refuses others with
 * `invalid_charge_amount_no_decimal_compatible`), and the three-decimal
 * currencies are charged to the nearest ten (the last digit must be 0). A
 * price off the step could never be paid, so it is refused when it is set.
 */
const STEP: Readonly<Record<string, { minor: number; why: string }>> = {
  ISK: { minor: 100, why: 'ISK is charged in whole krónur only: give a whole amount' },
  ...Object.fromEntries([...THREE_DECIMAL].map((c) => [c, { minor: 10, why: `${c} is charged to the nearest 0.010: the last decimal must be 0` }])),
};

/** The largest amount of minor units kept, so that every sum stays an exact integer in a JavaScript number. */
export const MAX_MINOR = 1_000_000_000_000;

/**
 * The ISO 4217 codes in use, as Node's ICU knows them (about 160). A build
 * without them (a Node compiled with no ICU data) falls back to the shape.
 */
const ISO_4217: ReadonlySet<string> = new Set(Intl.supportedValuesOf('currency'));

/** True for an ISO 4217 code in upper case ("EUR"); "eur" and "XYZ" are not. */
export function isCurrency(code: string): boolean {
  return /^[A-Z]{3}$/.test(code) && (ISO_4217.size === 0 || ISO_4217.has(code));
}

export function decimalsOf(currency: string): number {
  if (ZERO_DECIMAL.has(currency)) return 0;
  if (THREE_DECIMAL.has(currency)) return 3;
  return 2;
}

/** Why a price could not be read; the caller puts it in a 422. */
export class MoneyError extends Error {}

/**
 * Minor units of `value` ("49.90", "49.9", "50" or the JSON number 49.9) in
 * `currency`. Refuses negatives, more decimals than the currency has, an
 * exponent, amounts over MAX_MINOR, and amounts off the currency's STEP.
 */
export function parseMoney(value: string | number, currency: string): number {
  const text = typeof value === 'number' ? String(value) : value.trim();
  const decimals = decimalsOf(currency);
  const match = /^(\d{1,16})(?:\.(\d+))?$/.exec(text);
  if (!match) throw new MoneyError('must be a decimal amount such as "49.90": digits with at most one point, no sign, exponent or separator');
  const [, whole = '', fraction = ''] = match;
  if (fraction.length > decimals) {
    throw new MoneyError(decimals === 0 ? `${currency} has no minor unit: give a whole amount` : `${currency} has ${decimals} decimals at most`);
  }
  const minor = Number(whole) * 10 ** decimals + Number(fraction.padEnd(decimals, '0') || '0');
  if (minor > MAX_MINOR) throw new MoneyError(`must be at most ${formatMoney(MAX_MINOR, currency)}`);
  const step = STEP[currency];
  if (step && minor % step.minor !== 0) throw new MoneyError(step.why);
  return minor;
}

/** The decimal string of `minor` units: 4990 EUR is "49.90", 500 JPY is "500". */
export function formatMoney(minor: number | string, currency: string): string {
  const units = typeof minor === 'string' ? Number(minor) : minor;
  const decimals = decimalsOf(currency);
  const sign = units < 0 ? '-' : '';
  const digits = String(Math.abs(units)).padStart(decimals + 1, '0');
  if (decimals === 0) return sign + digits;
  return `${sign}${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
}
