/**
 * SIGTERM on `kiln serve` (the built server, as `npm start` runs it) while
 * an upload's body is still arriving: after the grace (10 s) its connection
 * is closed, and the process exits only once the upload's handler has
 * cleaned up, so no temp file is left behind, and a client that went away
 * is not logged as a server error.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../../helpers/config.js';
import { stagedUploads, uploadStaging } from '../../helpers/files.js';
import { startKiln } from '../../helpers/process.js';
import { RawConnection } from '../../helpers/raw-http.js';
import { fixture } from '../../helpers/upload.js';
import { registerUser } from '../../helpers/users.js';

const data = tempDataDir();
afterAll(() => data.cleanup());

describe('a stop with an upload half sent', () => {
  it('waits for the upload to clean up: no temp file is left, and nothing is logged as a failure', async () => {
    const kiln = await startKiln({ DATA_DIR: data.dir });
    const user = await registerUser(kiln.url, 'stopper');
    const conn = await RawConnection.open(kiln.url);
    const tmp = path.join(data.dir, 'tmp');
    try {
      conn.send(`POST /projects/halfway/images HTTP/1.1\r\nhost: kiln.test\r\nauthorization: ${user.headers.authorization}\r\ncontent-type: multipart/form-data; boundary=kiln\r\ncontent-length: 200000\r\n\r\n`);
      conn.send('--kiln\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n');
      conn.send(fixture('rocket_small_640x427.jpg').subarray(0, 50_000));
      await uploadStaging(data.dir);
      expect(await stagedUploads(data.dir)).toHaveLength(1);

      await kiln.stop('SIGTERM');
    } finally {
      conn.destroy();
    }
    expect(kiln.child.exitCode).toBe(0);
    expect(await readdir(tmp)).toEqual([]);
    // LOG_LEVEL is warn here: a client cut off by the stop is not an error of ours.
    expect(kiln.output()).not.toContain('"level":50');
  }, 40_000);
});
