/**
 * A request in flight when the server starts closing is answered, and its
 * answer says `Connection: close`: the connection does not linger for the
 * keep-alive timeout, holding the shutdown up.
 */
import { describe, expect, it } from 'vitest';
import { startServer } from '../../helpers/server.js';
import { RawConnection } from '../../helpers/raw-http.js';
import { registerUser } from '../../helpers/users.js';
import { fixture } from '../../helpers/upload.js';

describe('closing the server', () => {
  it('answers a request in flight with Connection: close, and closes without waiting out the keep-alive timeout', async () => {
    const server = await startServer({ RATE_LIMIT_UPLOAD: '0' });
    // Far longer than the test: a connection kept alive would hold the close this long.
    server.app.server.keepAliveTimeout = 60_000;
    const user = await registerUser(server.url);
    const photo = fixture('rocket_small_640x427.jpg');
    const head = `--b\r\nContent-Disposition: form-data; name="file"; filename="r.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
    const body = Buffer.concat([Buffer.from(head), photo, Buffer.from('\r\n--b--\r\n')]);
    const conn = await RawConnection.open(server.url);
    try {
      conn.send(`POST /projects/closing/images HTTP/1.1\r\nHost: kiln.test\r\nAuthorization: ${user.headers.authorization}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: ${body.length}\r\n\r\n`);
      conn.socket.write(body.subarray(0, 1000));
      // The upload is in flight when the close begins; its body comes after.
      await new Promise((r) => setTimeout(r, 100));
      const started = performance.now();
      const closing = server.close();
      await new Promise((r) => setTimeout(r, 100));
      conn.socket.write(body.subarray(1000));
      const [answer] = await conn.answers(1);
      expect(answer?.status).toBe(201);
      expect(answer?.headers.connection).toBe('close');
      await closing;
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      conn.destroy();
    }
  });
});
