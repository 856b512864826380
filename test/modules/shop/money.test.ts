import { describe, expect, it } from 'vitest';
import { formatMoney, isCurrency, MAX_MINOR, MoneyError, parseMoney } from '../../../src/modules/shop/money.js';

describe('money: exact minor units', () => {
  it('reads decimal strings and JSON numbers as the decimal written, never through float arithmetic', () => {
    expect(parseMoney('49.90', 'EUR')).toBe(4990);
    expect(parseMoney('49.9', 'EUR')).toBe(4990);
    expect(parseMoney('50', 'EUR')).toBe(5000);
    expect(parseMoney(' 0.07 ', 'EUR')).toBe(7);
    // 0.29 * 100 is 28.999999999999996 in binary floating point: a float conversion would say 28 or need rounding.
    expect(parseMoney(0.29, 'EUR')).toBe(29);
    // 1.01 * 1000 is 1010.0000000000001 in binary floating point.
    expect(parseMoney(1.01, 'BHD')).toBe(1010);
    expect(parseMoney(4.35, 'USD')).toBe(435);
  });

  it('follows each currency\'s decimals, as Stripe counts them', () => {
    expect(parseMoney('500', 'JPY')).toBe(500);
    expect(() => parseMoney('500.5', 'JPY')).toThrow(/no minor unit/);
    expect(parseMoney('1.250', 'KWD')).toBe(1250);
    expect(() => parseMoney('1.2345', 'KWD')).toThrow(/3 decimals/);
    expect(() => parseMoney('49.999', 'EUR')).toThrow(/2 decimals/);
  });

  it("refuses amounts Stripe would never charge: fractions of a króna, and a three-decimal currency's last digit", () => {
    expect(parseMoney('1500', 'ISK')).toBe(150000);
    expect(parseMoney('1500.00', 'ISK')).toBe(150000);
    expect(() => parseMoney('1.50', 'ISK')).toThrow(/whole krónur/);
    expect(() => parseMoney('0.01', 'ISK')).toThrow(/whole krónur/);
    for (const currency of ['BHD', 'JOD', 'KWD', 'OMR', 'TND']) {
      expect(parseMoney('5.120', currency)).toBe(5120);
      expect(parseMoney('5.12', currency)).toBe(5120);
      expect(() => parseMoney('5.124', currency), currency).toThrow(new RegExp(`${currency} is charged to the nearest 0.010`));
    }
    // Other currencies have no step past their minor unit.
    expect(parseMoney('0.01', 'EUR')).toBe(1);
    expect(parseMoney('1', 'JPY')).toBe(1);
  });

  it('refuses negatives, exponents, text and amounts past the bound', () => {
    for (const bad of ['-1.00', '1e3', 'abc', '', '1.', '.5', '1,50', 1e21, -3]) expect(() => parseMoney(bad, 'EUR'), String(bad)).toThrow(MoneyError);
    expect(parseMoney(formatMoney(MAX_MINOR, 'EUR'), 'EUR')).toBe(MAX_MINOR);
    expect(() => parseMoney('10000000000.01', 'EUR')).toThrow(/at most/);
  });

  it('reads a JSON number as the shortest decimal that is that number: trailing zeros and an exponent are the same number', () => {
    // JSON.parse has already made 49.90000 into 49.9 and 1e3 into 1000: these are those numbers.
    expect(parseMoney(49.9, 'EUR')).toBe(4990);
    expect(parseMoney(JSON.parse('49.90000') as number, 'EUR')).toBe(4990);
    expect(parseMoney(JSON.parse('1e3') as number, 'EUR')).toBe(100000);
    expect(parseMoney(JSON.parse('1e-2') as number, 'EUR')).toBe(1);
    // A number with more decimals than the currency has is still refused, whichever way it was written.
    expect(() => parseMoney(JSON.parse('4.9999e1') as number, 'EUR')).toThrow(/2 decimals/);
    expect(() => parseMoney(JSON.parse('1e-7') as number, 'EUR')).toThrow(MoneyError);
  });

  it('knows the ISO 4217 codes', () => {
    for (const code of ['EUR', 'USD', 'JPY', 'KWD', 'CHF']) expect(isCurrency(code), code).toBe(true);
    for (const code of ['XYZ', 'EUX', 'eur', 'EURO', '', 'E1R']) expect(isCurrency(code), code).toBe(false);
  });

  it('writes minor units back as the decimal string', () => {
    expect(formatMoney(4990, 'EUR')).toBe('49.90');
    expect(formatMoney(7, 'EUR')).toBe('0.07');
    expect(formatMoney(0, 'USD')).toBe('0.00');
    expect(formatMoney('123456', 'EUR')).toBe('1234.56');
    expect(formatMoney(500, 'JPY')).toBe('500');
    expect(formatMoney(1250, 'KWD')).toBe('1.250');
  });
});
