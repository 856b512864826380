/**
 * The DNS lookup the socket itself uses: it resolves the name, refuses the
 * connection when any address is not public (unless the name is allowed),
 * and hands the checked addresses straight to the connect, so no second
 * resolution can swap in another address (DNS rebinding).
 */
import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import { isBlockedAddress } from './address.js';
import { blockedAddress } from './errors.js';

export function guardedLookup(allowed: Set<string>): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      if (!allowed.has(hostname.toLowerCase())) {
        const bad = addresses.find((a) => isBlockedAddress(a.address));
        if (bad) return callback(blockedAddress(`${hostname} resolves to ${bad.address}, which`), '', 0);
      }
      if (options.all) callback(null, addresses);
      else callback(null, first.address, first.family);
    });
  };
}
