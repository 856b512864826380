/**
 * If-Match and If-Unmodified-Since on a gallery image: the route answers 412
 * for a copy that is no longer the file, and the hot path that answers cached
 * reads on the socket (modules/galleries/hot-read.ts) leaves such requests to
 * it rather than answering 200 past the precondition.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawConnection, getRequest } from '../../helpers/raw-http.js';
import { serverWithCachedThumb } from '../../helpers/cached-image.js';
import type { TestServer } from '../../helpers/server.js';

let server: TestServer;
let thumb: string;
let etag: string;
beforeAll(async () => {
  ({ server, thumb, etag } = await serverWithCachedThumb('preconditions'));
});
afterAll(async () => server.close());

describe('a cached gallery image with preconditions', () => {
  it('is 412 for a copy that changed, on a fresh connection (front door) and on one Node reads, and 200 for the current copy', async () => {
    const conn = await RawConnection.open(server.url);
    try {
      // The first request on the connection is the front door's to read; the /health after hands the connection to Node.
      conn.send(getRequest(thumb, { 'If-Match': '"another"' }) + getRequest('/health') + getRequest(thumb, { 'If-Unmodified-Since': 'Mon, 01 Jan 2001 00:00:00 GMT' }) + getRequest(thumb, { 'If-Match': etag }));
      const [viaDoor, health, viaNode, current] = await conn.answers(4);
      expect(viaDoor?.status).toBe(412);
      expect(health?.status).toBe(200);
      expect(viaNode?.status).toBe(412);
      expect(current?.status).toBe(200);
    } finally {
      conn.destroy();
    }
  });
});
