// Barcodes: real published GTINs, their normal forms, and near-misses.
import { describe, expect, it } from 'vitest';
import { gs1CheckDigit, normalizeBarcode } from '../../../src/modules/product-images/barcode.js';

describe('normalizeBarcode', () => {
  it.each([
    // EAN-13 stays as is
    ['4006381333931', '4006381333931'], // Stabilo, the GS1 textbook example
    ['5449000000996', '5449000000996'], // Coca-Cola 330 ml
    ['3017620422003', '3017620422003'], // Nutella
    ['0036000291452', '0036000291452'], // UPC-A written as EAN-13
    // UPC-A becomes EAN-13 with a leading 0
    ['036000291452', '0036000291452'], // Kleenex, the UPC-A textbook example
    ['012345678905', '0012345678905'],
    // GTIN-8 stays 8 digits
    ['96385074', '96385074'],
    ['73513537', '73513537'],
    // GTIN-14: leading 0 becomes EAN-13, any other stays 14
    ['04006381333931', '4006381333931'],
    ['00036000291452', '0036000291452'],
    ['14006381333938', '14006381333938'], // case of the Stabilo item, packaging indicator 1
    ['10012345678902', '10012345678902'],
    // spaces and hyphens are removed first
    ['4 006381 333931', '4006381333931'],
    ['0-36000-29145-2', '0036000291452'],
    [' 5449000000996 ', '5449000000996'],
    ['9638-5074', '96385074'],
  ])('%s -> %s', (input, expected) => {
    expect(normalizeBarcode(input)).toBe(expected);
  });

  it.each([
    ['4006381333932', 'EAN-13 with a wrong check digit'],
    ['5449000000995', 'EAN-13 with a wrong check digit'],
    ['036000291453', 'UPC-A with a wrong check digit'],
    ['96385075', 'GTIN-8 with a wrong check digit'],
    ['14006381333931', 'GTIN-14 with a wrong check digit'],
    ['1234567', '7 digits'],
    ['123456789', '9 digits'],
    ['1234567890', '10 digits'],
    ['12345678901', '11 digits'],
    ['9638501', '7 digits, the check digit right'],
    ['963850742', '9 digits, the check digit right'],
    ['1234567895', '10 digits, the check digit right'],
    ['03600029143', '11 digits, the check digit right'],
    ['400638133393', '13-digit code missing a digit, read as a wrong UPC-A'],
    ['400638133393155', '15 digits'],
    ['40063813339311', 'EAN-13 with a digit appended'],
    ['40063813339A1', 'a letter'],
    ['abcdefghijklm', 'letters'],
    ['4006381333931x', 'a trailing letter'],
    ['4006381.333931', 'a dot'],
    ['4006381_333931', 'an underscore'],
    ['+4006381333931', 'a sign'],
    ['４００６３８１３３３９３１', 'full-width digits'],
    ['', 'empty'],
    ['   ', 'only spaces'],
    ['--', 'only hyphens'],
    // only spaces and hyphens are removed: other white space is not part of a barcode
    ['4006381\t333931', 'a tab'],
    ['4006381333931\n', 'a trailing line break'],
    ['4006381\r\n333931', 'a CR LF'],
    ['4006381\u00a0333931', 'a no-break space'],
    ['4006381\u3000333931', 'an ideographic space'],
    ['\u20094006381333931', 'a thin space'],
    ['4006381\u2010333931', 'a Unicode hyphen'],
  ])('%s is refused (%s)', (input) => {
    expect(normalizeBarcode(input)).toBeNull();
  });

  it('computes GS1 check digits', () => {
    expect(gs1CheckDigit('400638133393')).toBe(1);
    expect(gs1CheckDigit('03600029145')).toBe(2);
    expect(gs1CheckDigit('9638507')).toBe(4);
    expect(gs1CheckDigit('1400638133393')).toBe(8);
    expect(gs1CheckDigit('544900000099')).toBe(6);
    expect(gs1CheckDigit('000000000000')).toBe(0);
  });
});
