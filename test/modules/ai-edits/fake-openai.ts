/**
 * OpenAI's image edit API on 127.0.0.1, as far as Kiln uses it:
 * `POST /v1/images/edits` (multipart: model, prompt, image[] files) answering
 * `{created, data: [{b64_json}]}`, and its error shapes
 * `{error: {message, type, code, param}}`. A test scripts the next answers
 * (a 429, a refusal, a hang, malformed bodies, a redirect); every request is recorded so
 * a test can check what the model was sent.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

export type Answer =
  | { kind: 'ok' }
  | { kind: 'error'; status: number; message: string; type: string; code: string | null; retryAfter?: string }
  /** Never answers (until the server closes). */
  | { kind: 'hang' }
  | { kind: 'not_json' }
  | { kind: 'no_data' }
  | { kind: 'not_image' }
  /** Sends the client elsewhere: a 307 keeps the method and the multipart body. */
  | { kind: 'redirect'; location: string };

export interface ReceivedEdit {
  /** When the request arrived (ms since the epoch). */
  at: number;
  /** For a `hang` answer: when Kiln closed the request it had stopped waiting for (ms since the epoch). */
  closedAt?: number;
  path: string;
  authorization: string | undefined;
  model: string | null;
  prompt: string | null;
  images: Array<{ field: string; name: string; type: string; bytes: Buffer }>;
}

export interface FakeOpenAI {
  /** What OPENAI_BASE_URL should be. */
  baseUrl: string;
  received: ReceivedEdit[];
  /** Answers for the next requests, in order; `ok` once the list is empty. */
  script: Answer[];
  /** The image an `ok` answer carries (PNG, 96x64). */
  result: Buffer;
  close(): Promise<void>;
}

export const REFUSAL: Answer = {
  kind: 'error',
  status: 400,
  message: 'Your request was rejected as a result of our safety system.',
  type: 'image_generation_user_error',
  code: 'moderation_blocked',
};

export const RATE_LIMITED = { kind: 'error', status: 429, message: 'Rate limit reached for images per minute.', type: 'requests', code: 'rate_limit_exceeded' } satisfies Answer;

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const result = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toBuffer();
  const received: ReceivedEdit[] = [];
  const script: Answer[] = [];
  const hanging = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    const at = Date.now();
    void (async () => {
      const body = await readBody(req);
      if (req.method !== 'POST' || req.url !== '/v1/images/edits') {
        sendJson(res, 404, { error: { message: `Unknown route ${req.method} ${req.url}`, type: 'invalid_request_error', code: null, param: null } });
        return;
      }
      const form = await new Response(body, { headers: { 'content-type': String(req.headers['content-type']) } }).formData();
      const images: ReceivedEdit['images'] = [];
      for (const [field, value] of form.entries()) {
        if (typeof value !== 'string') images.push({ field, name: value.name, type: value.type, bytes: Buffer.from(await value.arrayBuffer()) });
      }
      const edit: ReceivedEdit = {
        at,
        path: req.url,
        authorization: req.headers.authorization,
        model: form.get('model') as string | null,
        prompt: form.get('prompt') as string | null,
        images,
      };
      received.push(edit);
      const answer = script.shift() ?? { kind: 'ok' };
      switch (answer.kind) {
        case 'ok':
          return sendJson(res, 200, { created: Math.floor(Date.now() / 1000), data: [{ b64_json: fake.result.toString('base64') }] });
        case 'error':
          if (answer.retryAfter !== undefined) res.setHeader('retry-after', answer.retryAfter);
          return sendJson(res, answer.status, { error: { message: answer.message, type: answer.type, code: answer.code, param: null } });
        case 'hang':
          hanging.add(res);
          res.once('close', () => (edit.closedAt = Date.now()));
          return;
        case 'not_json':
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end('<html>Bad gateway</html>');
        case 'no_data':
          return sendJson(res, 200, { created: 1, data: [] });
        case 'not_image':
          return sendJson(res, 200, { created: 1, data: [{ b64_json: Buffer.from('this is not an image at all').toString('base64') }] });
        case 'redirect':
          res.writeHead(307, { location: answer.location });
          return void res.end();
      }
    })().catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fake: FakeOpenAI = {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    received,
    script,
    result,
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
