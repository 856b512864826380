/**
 * A local S3-compatible server for tests: the part of S3's REST protocol
 * that Kiln's S3BlobStore speaks (PutObject, GetObject with Range,
 * HeadObject, DeleteObject, ListObjectsV2 with paging, DeleteObjects), in
 * path style, over objects held in memory, on a free port of 127.0.0.1. It
 * refuses a request without a V4 Authorization header for its one access key
 * (the SDK computes the signature itself; checking it again here would test
 * the SDK, not Kiln). `requests` records what it was asked, for tests of how
 * the store pages.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import type { S3Settings } from '../../src/platform/blobs/s3.js';

export const LOCAL_S3_ACCESS_KEY = 'kiln-test-key';
const SECRET = 'kiln-test-secret';

interface StoredObject {
  body: Buffer;
  contentType: string;
  modifiedAt: Date;
  etag: string;
}

export interface LocalS3 {
  endpoint: string;
  /** Bucket -> key -> object. */
  readonly buckets: Map<string, Map<string, StoredObject>>;
  /** Each request as "METHOD /path?query". */
  readonly requests: string[];
  /** The STORAGE and S3_* variables of a Kiln that stores in `bucket` here. */
  env(bucket: string, prefix?: string): Record<string, string>;
  settings(bucket: string, prefix?: string): S3Settings;
  close(): Promise<void>;
}

const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const xmlUnescape = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';

function sendXml(res: ServerResponse, status: number, xml: string): void {
  const body = Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': body.length });
  res.end(body);
}

function sendError(req: IncomingMessage, res: ServerResponse, status: number, code: string): void {
  // A HEAD answer has no body: the client knows the error by its status alone.
  if (req.method === 'HEAD') {
    res.writeHead(status);
    res.end();
    return;
  }
  sendXml(res, status, `<Error><Code>${code}</Code><Message>${code}</Message></Error>`);
}

async function bodyOf(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function objectHeaders(o: StoredObject): Record<string, string> {
  return { 'content-type': o.contentType, 'last-modified': o.modifiedAt.toUTCString(), etag: o.etag, 'accept-ranges': 'bytes' };
}

export async function startLocalS3(bucketNames: string[]): Promise<LocalS3> {
  // The SDK's notice that its 2027 releases will want Node 22 says nothing about these tests.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const buckets = new Map(bucketNames.map((name) => [name, new Map<string, StoredObject>()]));
  const requests: string[] = [];
  let writes = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://local');
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (!(req.headers.authorization ?? '').startsWith(`AWS4-HMAC-SHA256 Credential=${LOCAL_S3_ACCESS_KEY}/`)) return sendError(req, res, 403, 'AccessDenied');
    const [, bucketName = '', ...keyParts] = url.pathname.split('/');
    const bucket = buckets.get(decodeURIComponent(bucketName));
    if (!bucket) return sendError(req, res, 404, 'NoSuchBucket');
    const key = keyParts.map(decodeURIComponent).join('/');

    if (key === '' && req.method === 'GET' && url.searchParams.get('list-type') === '2') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const maxKeys = Number(url.searchParams.get('max-keys') ?? 1000);
      const token = url.searchParams.get('continuation-token');
      const after = token ? Buffer.from(token, 'base64url').toString() : '';
      const keys = [...bucket.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
      const page = keys.slice(0, maxKeys);
      const truncated = keys.length > page.length;
      const contents = page
        .map((k) => {
          const o = bucket.get(k) as StoredObject;
          return `<Contents><Key>${xmlEscape(k)}</Key><LastModified>${o.modifiedAt.toISOString()}</LastModified><ETag>${xmlEscape(o.etag)}</ETag><Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
        })
        .join('');
      const next = truncated ? `<NextContinuationToken>${Buffer.from(page[page.length - 1] as string).toString('base64url')}</NextContinuationToken>` : '';
      return sendXml(
        res,
        200,
        `<ListBucketResult xmlns="${XMLNS}"><Name>${xmlEscape(bucketName)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${contents}${next}</ListBucketResult>`,
      );
    }
    if (key === '' && req.method === 'POST' && url.searchParams.has('delete')) {
      const xml = (await bodyOf(req)).toString();
      const quiet = /<Quiet>true<\/Quiet>/.test(xml);
      const deleted = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => xmlUnescape(m[1] as string));
      for (const k of deleted) bucket.delete(k);
      const entries = quiet ? '' : deleted.map((k) => `<Deleted><Key>${xmlEscape(k)}</Key></Deleted>`).join('');
      return sendXml(res, 200, `<DeleteResult xmlns="${XMLNS}">${entries}</DeleteResult>`);
    }
    if (key === '') return sendError(req, res, 400, 'InvalidRequest');

    if (req.method === 'PUT') {
      const body = await bodyOf(req);
      // Any string that changes with each write will do for a client; hashing the body would cost this
      // server more CPU than the client it measures beside it (bench/upload.bench.ts with BENCH_STORAGE=s3).
      const etag = `"${body.length.toString(16)}-${(++writes).toString(16)}"`;
      bucket.set(key, { body, contentType: req.headers['content-type'] ?? 'application/octet-stream', modifiedAt: new Date(), etag });
      res.writeHead(200, { etag });
      res.end();
      return;
    }
    if (req.method === 'DELETE') {
      bucket.delete(key);
      res.writeHead(204);
      res.end();
      return;
    }
    const o = bucket.get(key);
    if (!o) return sendError(req, res, 404, 'NoSuchKey');
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...objectHeaders(o), 'content-length': o.body.length });
      res.end();
      return;
    }
    if (req.method === 'GET') {
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = Math.min(Number(range[2]), o.body.length - 1);
        if (start > end) return sendError(req, res, 416, 'InvalidRange');
        const part = o.body.subarray(start, end + 1);
        res.writeHead(206, { ...objectHeaders(o), 'content-length': part.length, 'content-range': `bytes ${start}-${end}/${o.body.length}` });
        res.end(part);
        return;
      }
      res.writeHead(200, { ...objectHeaders(o), 'content-length': o.body.length });
      res.end(o.body);
      return;
    }
    sendError(req, res, 405, 'MethodNotAllowed');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendError(req, res, 500, 'InternalError');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const env = (bucket: string, prefix = ''): Record<string, string> => ({
    STORAGE: 's3',
    S3_BUCKET: bucket,
    S3_ENDPOINT: endpoint,
    S3_ACCESS_KEY_ID: LOCAL_S3_ACCESS_KEY,
    S3_SECRET_ACCESS_KEY: SECRET,
    S3_PREFIX: prefix,
  });
  // An empty directory for the config reader's .env lookup.
  const configDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-s3-config-'));
  return {
    endpoint,
    buckets,
    requests,
    env,
    // What the server reads from those variables, so that a store built here is configured as the server's is.
    settings: (bucket, prefix = '') => loadConfig(env(bucket, prefix), configDir).s3 as S3Settings,
    close: async () => {
      rmSync(configDir, { recursive: true, force: true });
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
