/**
 * The pages people use in a browser. Each page is a static HTML file and a
 * small plain JavaScript file next to this one, served as they are: no
 * build step and nothing from another origin (the CSP allows only this
 * origin's scripts). `tsc` does not copy them to dist/, so the built server
 * reads them from src/web/ beside it.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Context } from '../context.js';
import { bytesAnswer } from '../platform/http/schemas.js';

/** src/web when running from source; dist/src/web -> ../../../src/web when running the build. */
function assetDir(): string {
  const here = import.meta.dirname;
  const candidates = [here, path.resolve(here, '..', '..', '..', 'src', 'web')];
  const found = candidates.find((dir) => existsSync(path.join(dir, 'upload.html')));
  if (!found) throw new Error(`the web pages are missing (looked in ${candidates.join(', ')})`);
  return found;
}

const ASSETS = [
  { route: '/upload', file: 'upload.html', type: 'text/html; charset=utf-8', summary: 'Upload page: sign in, upload a photo, fetch a product picture by barcode' },
  { route: '/upload.js', file: 'upload.js', type: 'text/javascript; charset=utf-8', summary: 'The upload page\'s script' },
] as const;

export async function webPages(app: FastifyInstance, _ctx: Context): Promise<void> {
  const dir = assetDir();
  for (const asset of ASSETS) {
    // Read once at startup: the files are small and only change with a deploy.
    const body = await readFile(path.join(dir, asset.file), 'utf8');
    app.get(
      asset.route,
      { schema: { tags: ['web'], summary: asset.summary, response: { 200: bytesAnswer(asset.type.split(';')[0] as string, asset.summary, 'text') } } },
      async (_request, reply) => reply.type(asset.type).header('cache-control', 'no-cache').send(body),
    );
  }
}
