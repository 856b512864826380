/**
 * Product barcodes (GS1 GTINs): GTIN-8, UPC-A (GTIN-12), EAN-13 and GTIN-14,
 * validated by their check digit and normalised to the one form a barcode
 * is stored and looked up under.
 */

/** GS1 check digit for `body` (all digits but the last): weights 3,1,3,… from the right. */
export function gs1CheckDigit(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    const digit = body.charCodeAt(body.length - 1 - i) - 48;
    sum += digit * (i % 2 === 0 ? 3 : 1);
  }
  return (10 - (sum % 10)) % 10;
}

/**
 * The normalised barcode, or null when `input` is not a valid GTIN.
 * Spaces (U+0020) and hyphens (U+002D) are removed first, and nothing else:
 * a tab, a line break or a no-break space makes the code invalid. UPC-A
 * becomes EAN-13 with a leading 0 and a GTIN-14 starting with 0 becomes
 * EAN-13 (the same product, as GS1 pads); GTIN-8 stays 8 digits and any
 * other GTIN-14 stays 14.
 */
export function normalizeBarcode(input: string): string | null {
  const digits = input.replace(/[ -]/g, '');
  if (!/^\d+$/.test(digits) || ![8, 12, 13, 14].includes(digits.length)) return null;
  // Leading zeros do not change the check digit, so it is checked on the code as given.
  if (gs1CheckDigit(digits.slice(0, -1)) !== Number(digits[digits.length - 1])) return null;
  if (digits.length === 12) return `0${digits}`;
  if (digits.length === 14 && digits.startsWith('0')) return digits.slice(1);
  return digits;
}
