import { startServer, type TestServer } from './server.js';
import { fixture, postMultipart } from './upload.js';
import { registerUser } from './users.js';

/**
 * A server whose hot path is installed (no default rate limit: the front
 * door answers anonymous image reads itself) with one public image in
 * `project`, its thumb read once the long way so that its row and bytes are
 * cached and the next reads may be answered before Fastify.
 */
export async function serverWithCachedThumb(project: string): Promise<{ server: TestServer; thumb: string; etag: string }> {
  const server = await startServer({ RATE_LIMIT_DEFAULT: '0' });
  const user = await registerUser(server.url);
  const res = await postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'r.jpg', data: fixture('rocket_small_640x427.jpg'), type: 'image/jpeg' }], user.headers);
  if (res.status !== 201) throw new Error(`upload answered ${res.status}`);
  const thumb = ((await res.json()) as { urls: { thumb: string } }).urls.thumb;
  const first = await fetch(`${server.url}${thumb}`);
  await first.arrayBuffer();
  return { server, thumb, etag: first.headers.get('etag') as string };
}
