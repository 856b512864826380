/**
 * Text Kiln keeps from outside to show it (a client's file name, a product
 * database's product name): what cannot be shown or stored goes, and its
 * length is bounded.
 */

/**
 * The C0 control characters and DEL: none can be shown, and PostgreSQL's text
 * cannot hold NUL. Global: for `replace`, never `test` (which would keep state).
 */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this matches
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g;

/** The first `max` characters of `text`, counted in code points, so that no character is cut in two. */
export function firstCharacters(text: string, max: number): string {
  return [...text].slice(0, max).join('');
}

/**
 * Whether `text` is Unicode: no lone surrogate (a UTF-16 unit of U+D800 to U+DFFF without its pair, which
 * JSON's `\ud800` can write and which has no UTF-8 form). `String.prototype.isWellFormed`, in Node 20;
 * TypeScript's ES2023 lib does not declare it yet.
 */
export function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** `text` with each lone surrogate made U+FFFD, as a database would store it (`String.prototype.toWellFormed`). */
export function toWellFormed(text: string): string {
  return (text as string & { toWellFormed(): string }).toWellFormed();
}
