/**
 * The head of an answer the front door writes, as Node writes it for the
 * same answer (front-door.ts): a hot path's [name, value, …] header list as
 * header lines, made once per list, and the Date header's value, made once
 * a second.
 */

/** [name, value, …] as header lines. */
export function headerLines(list: readonly string[]): string {
  let lines = '';
  for (let i = 0; i < list.length; i += 2) lines += `${list[i] as string}: ${list[i + 1] as string}\r\n`;
  return lines;
}

/** What follows the request id: a reply's header lines and the Date header's name, made once per header list (a hot path keeps one list per stored answer). */
export const afterRequestId = new WeakMap<readonly string[], string>();

let dateSecond = -1;
let dateText = '';
/** The Date header's value, made once a second. */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
