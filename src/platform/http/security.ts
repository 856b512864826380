/**
 * Security headers, computed once. Helmet decides which headers a response
 * carries (CSP, nosniff, frame and referrer policies, HSTS …); since none of
 * ours depends on the request, Kiln asks helmet once at start and then sets
 * the same object on every answer, instead of letting it rebuild the CSP
 * string per request (a tenth of a hot GET's time; docs/performance.md).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet, { type HelmetOptions } from 'helmet';

export const HELMET_OPTIONS: HelmetOptions = {
  // The docs pages and the upload page load their own scripts and styles from this origin. None of
  // them has an inline script, so none may run (an injected <script> included); Swagger UI and the
  // upload page do set inline styles.
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      imgSrc: ["'self'", 'data:', 'blob:'],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
      // Kiln speaks plain HTTP itself: told to upgrade, a browser would ask for the pages' own
      // scripts and styles over https and /docs would come up blank on any non-loopback address.
      // A TLS proxy in front can add the directive.
      upgradeInsecureRequests: null,
    },
  },
  // Images are meant to be embedded by the shop's own pages on other origins.
  crossOriginResourcePolicy: { policy: 'cross-origin' },
};

/** The headers helmet would set on any response, as a plain object. */
export function securityHeaders(options: HelmetOptions = HELMET_OPTIONS): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  let failure: unknown;
  // helmet is Express middleware: it only calls setHeader/removeHeader and then next(), synchronously.
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    failure = err;
  });
  if (failure) throw failure;
  return headers;
}

/**
 * Headers that only mean something for a document a browser renders (opener
 * and framing policies, referrer, legacy IE switches). An image answer
 * leaves them out: they protect nothing there and every answer pays for
 * them in bytes and header handling.
 */
export const DOCUMENT_ONLY_HEADERS = [
  'cross-origin-opener-policy',
  'origin-agent-cluster',
  'referrer-policy',
  'x-dns-prefetch-control',
  'x-download-options',
  'x-frame-options',
  'x-permitted-cross-domain-policies',
  'x-xss-protection',
] as const;

/**
 * The policy of an image answer: opened on its own, it renders sandboxed
 * with nothing else allowed to load (the policy code hosts use for raw user
 * files). Stricter than the documents' policy, and a fifth of its length.
 */
export const MEDIA_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/** The security headers of an image answer: the documents' set without DOCUMENT_ONLY_HEADERS, with MEDIA_CSP. */
export function mediaSecurityHeaders(all: Readonly<Record<string, string>> = securityHeaders()): Record<string, string> {
  const headers: Record<string, string> = { ...all, 'content-security-policy': MEDIA_CSP };
  for (const name of DOCUMENT_ONLY_HEADERS) delete headers[name];
  return headers;
}
