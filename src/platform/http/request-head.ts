/**
 * Reading one request head the front door's narrow way (front-door.ts says
 * which requests it takes): one linear regular expression checks the whole
 * head, then one pass over its lines keeps the headers a hot path may read
 * and refuses anything that frames a body or changes the connection. A head
 * it refuses is not an error: the connection goes to Node's HTTP server.
 */
import { HOT_HEADERS, type HotHeader, type HotRequest } from './hot-path.js';

const MAX_HEADERS = 64;

/**
 * A whole head the front door reads: the request line, then header lines of
 * a field name (an RFC 9110 token) and a value of printable ASCII, spaces and
 * tabs. One pass, linear: no character can start two alternatives.
 */
const HEAD = /^GET \/[\x21-\x7e]* HTTP\/1\.1(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*)*$/;

/** What the front door does with a header: keep it for the hot paths, require it, check it, or leave the request to Node. */
type Treatment = HotHeader | 'host' | 'connection' | 'node';
const TREATMENT: ReadonlyArray<readonly [string, Treatment]> = [
  ...HOT_HEADERS.map((name) => [name, name] as const),
  ['host', 'host'],
  ['connection', 'connection'],
  // They frame a body or change the connection.
  ...['content-length', 'transfer-encoding', 'expect', 'upgrade', 'te', 'http2-settings'].map((name) => [name, 'node'] as const),
];

/**
 * The names of TREATMENT by length and lower-cased first letter, so that a
 * header line is matched in place, without making its name's string: most
 * lines (a browser sends a dozen) match no key at all.
 */
const BY_KEY = new Map<number, Array<readonly [string, Treatment]>>();
for (const entry of TREATMENT) {
  const key = candidateKey(entry[0].length, entry[0].charCodeAt(0));
  let names = BY_KEY.get(key);
  if (!names) BY_KEY.set(key, (names = []));
  names.push(entry);
}
function candidateKey(length: number, firstChar: number): number {
  return length * 128 + (firstChar | 0x20);
}

/**
 * What TREATMENT says of the field name at head[start, colon), compared
 * without regard to case. The names there are lower-case letters, '-' and
 * '2'; `| 0x20` leaves those alone and lower-cases a letter, and of the other
 * token characters a name may hold, none becomes one of them.
 */
function treatmentOf(head: string, start: number, colon: number): Treatment | undefined {
  const names = BY_KEY.get(candidateKey(colon - start, head.charCodeAt(start)));
  if (names === undefined) return undefined;
  next: for (const [name, treatment] of names) {
    for (let i = 1; i < name.length; i++) if ((head.charCodeAt(start + i) | 0x20) !== name.charCodeAt(i)) continue next;
    return treatment;
  }
  return undefined;
}

/** True for a space or a tab. */
function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

/** The headers a hot path may read, all present (undefined when absent) so that every request's object has one shape. */
type FrontDoorHeaders = { [name in HotHeader]: string | undefined };

/**
 * One request head (without its blank line) read the front door's narrow way,
 * or null when it is anything else. Of the headers, only those a hot path may
 * read are kept (HOT_HEADERS).
 */
export function parseHead(head: string): HotRequest | null {
  if (!HEAD.test(head)) return null;
  const headers: FrontDoorHeaders = {
    authorization: undefined,
    'x-api-key': undefined,
    range: undefined,
    'if-range': undefined,
    origin: undefined,
    'if-none-match': undefined,
    'if-modified-since': undefined,
    'if-match': undefined,
    'if-unmodified-since': undefined,
    'x-request-id': undefined,
  };
  let host = false;
  let count = 0;
  for (let at = head.indexOf('\r\n'); at !== -1; ) {
    if (++count > MAX_HEADERS) return null;
    const start = at + 2;
    at = head.indexOf('\r\n', start);
    const colon = head.indexOf(':', start);
    const treatment = treatmentOf(head, start, colon);
    if (treatment === undefined) continue;
    if (treatment === 'node') return null;
    // The value without the spaces and tabs around it, as Node keeps it.
    let from = colon + 1;
    let to = at === -1 ? head.length : at;
    while (from < to && isBlank(head.charCodeAt(from))) from++;
    while (to > from && isBlank(head.charCodeAt(to - 1))) to--;
    const value = head.slice(from, to);
    if (treatment === 'host') {
      // Twice, or not a host: Node's to refuse (errors.ts, refuseBadHost).
      if (host || !isHostValue(value)) return null;
      host = true;
    } else if (treatment === 'connection') {
      if (value.toLowerCase() !== 'keep-alive') return null;
    } else {
      if (headers[treatment] !== undefined) return null;
      headers[treatment] = value;
    }
  }
  if (!host) return null;
  // The target: from after "GET " to the space before "HTTP/1.1", which HEAD has checked.
  return { method: 'GET', url: head.slice(4, head.indexOf(' ', 4)), headers };
}

/** RFC 9110 7.2: uri-host [ ":" port ], the host a name of RFC 3986's reg-name characters or a bracketed IP literal; empty is allowed. */
const HOST = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]{0,5})?$/;

/** A Host header's value is a host (a name or an address) with an optional port. */
export function isHostValue(value: string): boolean {
  return HOST.test(value);
}
