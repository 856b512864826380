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
