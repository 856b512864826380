/**
 * Which IP addresses an outbound request may not reach: everything that is
 * not the public internet (loopback, private, link-local, CGNAT, multicast,
 * unspecified, reserved, cloud metadata), including IPv4 addresses wrapped
 * in IPv6 (mapped, compatible, translated, NAT64, 6to4, Teredo; local-use NAT64 is refused whole).
 */
import { BlockList, isIP, isIPv4 } from 'node:net';

const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata 169.254.169.254
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // old 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  blocked.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128], // unspecified
  ['::1', 128],
  ['100::', 64], // discard
  // Local-use NAT64 (RFC 8215): the operator's own translator, to any IPv4 behind it (169.254.169.254 included).
  // Its IPv4 may sit at any RFC 6052 position (prefix /32 to /96), so there is no one place to read it: the whole /48 is refused.
  ['64:ff9b:1::', 48],
  ['2001:2::', 48], // benchmarking
  ['2001:10::', 28], // ORCHID
  ['2001:20::', 28], // ORCHIDv2
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation (RFC 9637)
  ['5f00::', 16], // SRv6 SIDs
  ['fc00::', 7], // unique local, AWS metadata fd00:ec2::254
  ['fe80::', 10], // link-local
  ['fec0::', 10], // old site-local
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(net, bits, 'ipv6');
}

/** The 8 16-bit groups of an IPv6 address (any valid notation, with or without an embedded IPv4 tail). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase().replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const o = v4[1].split('.').map(Number);
    text = text.slice(0, -v4[1].length) + `${(((o[0] ?? 0) << 8) | (o[1] ?? 0)).toString(16)}:${(((o[2] ?? 0) << 8) | (o[3] ?? 0)).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const middle = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...middle, ...t].map((g) => parseInt(g, 16));
}

/** `hi`.`lo` (two 16-bit groups) as a dotted IPv4 address. */
function dotted(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * The IPv4 addresses an IPv6 address carries, if any: in its last 32 bits,
 * mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, translated ::ffff:0:a.b.c.d
 * (SIIT, RFC 2765) and the well-known NAT64 prefix 64:ff9b::a.b.c.d; and the
 * two deprecated tunnels, whose IPv4 sits at a fixed place, so it is read
 * rather than the whole prefix refused (a public 6to4 or Teredo peer stays
 * reachable, one that leads to a refused IPv4 does not): 6to4 2002:AABB:CCDD::/48
 * (RFC 3056) carries AA.BB.CC.DD in bits 16-47, and Teredo 2001:0::/32
 * (RFC 4380) both its server's IPv4 (bits 32-63) and its client's (the last
 * 32 bits, inverted).
 */
function embeddedIPv4s(address: string): string[] {
  const g = ipv6Groups(address);
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const group = (i: number) => g[i] ?? 0;
  if (g[0] === 0x2002) return [dotted(group(1), group(2))];
  if (g[0] === 0x2001 && g[1] === 0) return [dotted(group(2), group(3)), dotted(group(6) ^ 0xffff, group(7) ^ 0xffff)];
  const mapped = zeros(0, 5) && g[5] === 0xffff;
  const compatible = zeros(0, 6) && group(6) !== 0;
  const translated = zeros(0, 4) && g[4] === 0xffff && g[5] === 0;
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6);
  if (!mapped && !compatible && !translated && !nat64) return [];
  return [dotted(group(6), group(7))];
}

/** True when `address` (an IP literal) is not on the public internet. Anything unparsable is blocked. */
export function isBlockedAddress(address: string): boolean {
  const ip = address.replace(/^\[|\]$/g, '');
  if (isIPv4(ip)) return blocked.check(ip, 'ipv4');
  if (isIP(ip.replace(/%.*$/, '')) !== 6) return true;
  const inner = embeddedIPv4s(ip);
  if (inner.length > 0) return inner.some((v4) => blocked.check(v4, 'ipv4'));
  return blocked.check(ip.replace(/%.*$/, ''), 'ipv6');
}

/** `host` as in a URL's hostname: an IP literal (brackets removed) or null for a name. */
export function ipLiteral(host: string): string | null {
  const bare = host.replace(/^\[|\]$/g, '');
  return isIP(bare) ? bare : null;
}
