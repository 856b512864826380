/**
 * Which bodies a route takes. @fastify/multipart is registered for the whole
 * app, so Fastify accepts a multipart/form-data body on every route and
 * leaves it unread (`request.body` undefined): a JSON route would then answer
 * a 422 about a body that is missing. Only a route that reads multipart (its
 * `config.multipartBody`) takes one; any other route refuses it with the
 * same 415 `unsupported_media_type` as a text/plain body, before validation
 * and without reading a part.
 */
import { errorCodes, type FastifyRequest, type HTTPMethods, type preValidationHookHandler, type RouteOptions } from 'fastify';

/** The methods Fastify reads a body for, whether or not the route declares one. */
const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** True when a route of `method` (one or several) may be sent a body that Fastify parses. */
export function carriesBody(method: HTTPMethods | HTTPMethods[] | string | string[]): boolean {
  return [method].flat().some((m) => BODY_METHODS.has(m.toUpperCase()));
}

const refuseMultipart: preValidationHookHandler = (request: FastifyRequest, _reply, done) => {
  done(request.isMultipart() ? new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE() : undefined);
};

/**
 * For the app's onRoute hook: a route that may be sent a body and reads no
 * multipart gets, first among its preValidation hooks, the check that
 * refuses one. Its error handler answers (problem+json, or a module's own
 * envelope) and reads the unread body out (drain.ts).
 */
export function refuseUnreadMultipart(route: RouteOptions): void {
  if (!carriesBody(route.method) || route.config?.multipartBody) return;
  const own = route.preValidation;
  route.preValidation = own === undefined ? [refuseMultipart] : [refuseMultipart, ...[own].flat()];
}
