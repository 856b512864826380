import { createHash } from 'node:crypto';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { TestClock } from '../../auth/helpers.js';
import { ADMIN, createOrder, expectProblem, filePart, filesUnder, loginAdmin, photo, ROCKET_JPG, type OrderBody, type UploadBody } from './helpers.js';

let server: TestServer;
let alice: TestUser;
let bob: TestUser;
let admin: { authorization: string };
let jpg: Buffer;
const clock = new TestClock();

beforeAll(async () => {
  server = await startServer({ ...ADMIN }, { clock });
  [alice, bob] = await Promise.all([registerUser(server.url, 'alice'), registerUser(server.url, 'bob')]);
  admin = await loginAdmin(server.url);
  jpg = await photo();
});
afterAll(async () => server?.close());

function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url.startsWith('http') ? url : `${server.url}${url}`, { headers });
}

function putStatus(orderId: string, status: string, headers: Record<string, string> = admin): Promise<Response> {
  return fetch(`${server.url}/api/images/orders/${orderId}/status`, {
    method: 'PUT',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ status }),
  });
}

describe('upload', () => {
  it('makes an order of the photos and the text fields, in the Pet Planter shape', async () => {
    const res = await fetch(`${server.url}/api/images/upload`, {
      method: 'POST',
      headers: alice.headers,
      body: (() => {
        const form = new FormData();
        form.append('pet_name', 'Max <b>');
        form.append('pet_type', 'dog');
        form.append('notes', 'Loves to play fetch');
        // A text field of no meaning here is ignored, as the Pet Planter form did.
        form.append('pet_nickname', 'Maxi');
        form.append('files', new Blob([jpg], { type: 'text/plain' }), '../../etc/passwd.jpg');
        form.append('files', new Blob([ROCKET_JPG]), 'rocket.jpg');
        return form;
      })(),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as UploadBody;
    expect(body).toMatchObject({ success: true, message: expect.any(String), files_uploaded: 2 });
    const order = body.order_metadata;
    expect(order).toMatchObject({ order_id: body.order_id, user_id: alice.id, pet_name: 'Max <b>', pet_type: 'dog', notes: 'Loves to play fetch', status: 'pending' });
    expect(order.order_id).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    expect(order.upload_timestamp).toMatch(/Z$/);
    expect(order.history).toEqual([{ status: 'pending', at: order.upload_timestamp, by: alice.id }]);
    const [first, second] = order.files;
    expect(first).toMatchObject({ original_filename: '../../etc/passwd.jpg', content_type: 'image/jpeg', bytes: jpg.length, width: 1280, height: 800 });
    expect(first?.stored_filename).toMatch(/^\d{8}_\d{6}_[0-9a-f]+\.jpg$/);
    expect(first?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(second).toMatchObject({ original_filename: 'rocket.jpg', width: 640, height: 427 });
    expect(Object.keys(first?.urls ?? {}).sort()).toEqual(['medium', 'original', 'thumb']);
  });

  it('stores original, medium (fits 1600) and thumb (fits 400) variants', async () => {
    const order = await createOrder(server.url, alice.headers, [filePart(await photo(2400))]);
    const urls = order.files[0]?.urls;
    const sizes: Array<[keyof NonNullable<typeof urls>, number]> = [['original', 2400], ['medium', 1600], ['thumb', 400]];
    for (const [size, width] of sizes) {
      const res = await get(urls?.[size] ?? '');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/jpeg');
      const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
      expect(meta.width).toBe(width);
    }
  });
});

describe('text fields as given', () => {
  it('are stored and returned exactly as sent, surrounding and inner spaces included', async () => {
    const sent = { pet_name: '  Max  ', pet_type: '\tdog ', notes: ' two  spaces,\ta tab and an end space ' };
    const made = await createOrder(server.url, alice.headers, [
      { field: 'pet_name', data: sent.pet_name },
      { field: 'pet_type', data: sent.pet_type },
      { field: 'notes', data: sent.notes },
      filePart(jpg),
    ]);
    expect(made).toMatchObject(sent);
    const read = ((await (await get(`/api/images/orders/${made.order_id}`, alice.headers)).json()) as { order: OrderBody }).order;
    expect(read).toMatchObject(sent);
  });
});

describe('files as received', () => {
  it('keep the sha256 and bytes of each upload as sent, and its content_type as sniffed (JPEG, PNG, WebP)', async () => {
    const png = fixture('chelsea_cat_small_451x300.png');
    const webp = await sharp(ROCKET_JPG).webp({ quality: 80 }).toBuffer();
    const sent: Array<[Buffer, string, string]> = [
      [ROCKET_JPG, 'rocket.jpg', 'image/jpeg'],
      [png, 'cat.png', 'image/png'],
      [webp, 'rocket.webp', 'image/webp'],
    ];
    // The client claims nothing useful: the type must come from the bytes.
    const order = await createOrder(server.url, alice.headers, sent.map(([data, name]) => filePart(data, name, 'application/octet-stream')));
    expect(order.files).toHaveLength(sent.length);
    order.files.forEach((file, i) => {
      const [data, name, type] = sent[i] as [Buffer, string, string];
      expect(file).toMatchObject({
        original_filename: name,
        content_type: type,
        bytes: data.length,
        sha256: createHash('sha256').update(data).digest('hex'),
      });
    });
  });
});

describe('reading and access', () => {
  let order: OrderBody;
  beforeAll(async () => {
    order = await createOrder(server.url, alice.headers, [filePart(jpg)]);
  });

  it('lists the caller\'s own orders, newest first, with a count', async () => {
    const later = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    const res = await get('/api/images/orders', alice.headers);
    const body = (await res.json()) as { success: boolean; orders: OrderBody[]; count: number };
    expect(body.success).toBe(true);
    expect(body.count).toBe(body.orders.length);
    expect(body.orders.every((o) => o.user_id === alice.id)).toBe(true);
    const ids = body.orders.map((o) => o.order_id);
    expect(ids.indexOf(later.order_id)).toBeLessThan(ids.indexOf(order.order_id));
    const bobs = (await (await get('/api/images/orders', bob.headers)).json()) as { count: number };
    expect(bobs.count).toBe(0);
  });

  it('answers one order to its owner and to an admin, 404 to anyone else', async () => {
    const mine = await get(`/api/images/orders/${order.order_id}`, alice.headers);
    expect(((await mine.json()) as { order: OrderBody }).order.order_id).toBe(order.order_id);
    expect((await get(`/api/images/orders/${order.order_id}`, admin)).status).toBe(200);
    await expectProblem(await get(`/api/images/orders/${order.order_id}`, bob.headers), 404, 'order_not_found');
    await expectProblem(await get('/api/images/orders/nope', alice.headers), 404, 'order_not_found');
    await expectProblem(await get(`/api/images/orders/${order.order_id}`), 401);
  });

  it('serves a photo unsigned to its owner and an admin only', async () => {
    const file = order.files[0] as OrderBody['files'][number];
    const plain = `/api/images/orders/${order.order_id}/files/${file.file_id}?size=thumb`;
    expect((await get(plain, alice.headers)).status).toBe(200);
    expect((await get(plain, admin)).status).toBe(200);
    await expectProblem(await get(plain, bob.headers), 404);
    await expectProblem(await get(plain), 401);
    await expectProblem(await get(`/api/images/orders/${order.order_id}/files/${file.file_id}?size=huge`, alice.headers), 422);
  });
});

describe('signed links', () => {
  let file: OrderBody['files'][number];
  beforeAll(async () => {
    file = (await createOrder(server.url, alice.headers, [filePart(jpg)])).files[0] as OrderBody['files'][number];
  });

  it('work without credentials', async () => {
    const res = await get(file.urls.medium);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toContain('private');
  });

  it('fail with 403 when altered', async () => {
    const url = new URL(file.urls.thumb, server.url);
    const tampered = [
      url.toString().replace('size=thumb', 'size=original'),
      url.toString().replace(/sig=([0-9a-f])/, (_m, c: string) => `sig=${c === '0' ? '1' : '0'}`),
      url.toString().replace(/expires=(\d+)/, (_m, e: string) => `expires=${Number(e) + 3600}`),
      url.toString().replace(file.file_id, 'someone-elses-file-id'),
      url.toString().replace(/&sig=[0-9a-f]+/, ''),
    ];
    for (const t of tampered) await expectProblem(await get(t), 403);
  });

  it('fail with 403 invalid_signature, as an altered signature does, whatever expires or sig is altered into', async () => {
    const link = new URL(file.urls.thumb, server.url);
    const expires = link.searchParams.get('expires') ?? '';
    const sig = link.searchParams.get('sig') ?? '';
    const withParams = (params: Array<[string, string]>) => {
      const u = new URL(link.pathname, server.url);
      for (const [name, value] of params) u.searchParams.append(name, value);
      return u.toString();
    };
    const otherSig = `${sig[0] === '0' ? '1' : '0'}${sig.slice(1)}`;
    const { code } = await expectProblem(await get(withParams([['size', 'thumb'], ['expires', expires], ['sig', otherSig]])), 403);
    expect(code).toBe('invalid_signature');
    const alteredExpires = [
      'soon', // not a number
      '', // empty
      '-1', // negative
      `-${expires}`,
      `${expires}.5`, // a fraction
      `${expires}.0`,
      '1e10',
      `+${expires}`,
      ` ${expires}`,
      `0${expires}`, // the same number, spelt otherwise
      '0x1',
      '99999999999999999999999', // huge
      '9007199254740993', // past the integers a number holds exactly
      String(Number.MAX_SAFE_INTEGER),
      '0',
    ];
    for (const e of alteredExpires) {
      const res = await get(withParams([['size', 'thumb'], ['expires', e], ['sig', sig]]));
      expect(`${e}: ${res.status}`).toBe(`${e}: 403`);
      await expectProblem(res, 403, code);
    }
    const alteredLinks: Array<Array<[string, string]>> = [
      [['size', 'thumb'], ['expires', expires], ['sig', '']],
      [['size', 'thumb'], ['expires', expires], ['sig', 'not hex at all']],
      [['size', 'thumb'], ['expires', expires], ['sig', `${sig}00`]],
      [['size', 'thumb'], ['expires', ''], ['sig', '']],
      [['size', 'thumb'], ['expires', '']],
      [['size', 'thumb'], ['sig', sig]],
      // a parameter given twice
      [['size', 'thumb'], ['expires', expires], ['expires', expires], ['sig', sig]],
      [['size', 'thumb'], ['expires', expires], ['sig', sig], ['sig', sig]],
    ];
    for (const params of alteredLinks) await expectProblem(await get(withParams(params)), 403, code);
    // Unaltered, the same link still works.
    expect((await get(withParams([['size', 'thumb'], ['expires', expires], ['sig', sig]]))).status).toBe(200);
  });

  it('fail with 403 once SIGNED_URL_TTL has passed', async () => {
    const fresh = (await (await get(`/api/images/orders/${(await createOrder(server.url, alice.headers, [filePart(jpg)])).order_id}`, alice.headers)).json()) as { order: OrderBody };
    const url = fresh.order.files[0]?.urls.original ?? '';
    expect((await get(url)).status).toBe(200);
    clock.advanceMinutes(61);
    try {
      await expectProblem(await get(url), 403, 'link_expired');
    } finally {
      clock.advanceMinutes(-61);
    }
  });
});

describe('signed links with SIGNED_URL_TTL=60', () => {
  let short: TestServer;
  const shortClock = new TestClock();
  beforeAll(async () => {
    short = await startServer({ SIGNED_URL_TTL: '60' }, { clock: shortClock });
  });
  afterAll(async () => short?.close());

  /** Moves the server's clock so that it reads `at` (ms since the epoch). */
  function setClock(at: number): void {
    shortClock.advanceSeconds((at - shortClock.now().getTime()) / 1000);
  }

  it('expire 60 seconds after the order was read, and fail with 403 link_expired from then on', async () => {
    const user = await registerUser(short.url, 'carol');
    const before = Math.floor(shortClock.now().getTime() / 1000);
    const order = await createOrder(short.url, user.headers, [filePart(jpg)]);
    const after = Math.floor(shortClock.now().getTime() / 1000);
    const links = Object.values(order.files[0]?.urls ?? {}).map((u) => new URL(u, short.url));
    expect(links).toHaveLength(3);
    const expires = Number(links[0]?.searchParams.get('expires'));
    expect(expires).toBeGreaterThanOrEqual(before + 60);
    expect(expires).toBeLessThanOrEqual(after + 60);
    for (const link of links) expect(link.searchParams.get('expires')).toBe(String(expires));

    const start = shortClock.now().getTime();
    try {
      // Twenty seconds before `expires` (the clock keeps running through the fetches): every link works without credentials.
      setClock(expires * 1000 - 20_000);
      for (const link of links) expect((await fetch(link)).status).toBe(200);
      // A second after: every link is expired.
      setClock(expires * 1000 + 1000);
      for (const link of links) await expectProblem(await fetch(link), 403, 'link_expired');
      // The owner still gets the photo unsigned.
      const plain = new URL(links[0]!.pathname, short.url);
      expect((await fetch(plain, { headers: user.headers })).status).toBe(200);
    } finally {
      setClock(start);
    }
  });
});

describe('status lifecycle', () => {
  it('walks pending → in_review → modeling → ready → shipped, keeping the history', async () => {
    const order = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    for (const status of ['in_review', 'modeling', 'ready', 'shipped']) {
      const res = await putStatus(order.order_id, status);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { order: OrderBody }).order.status).toBe(status);
    }
    const final = ((await (await get(`/api/images/orders/${order.order_id}`, alice.headers)).json()) as { order: OrderBody }).order;
    expect(final.history.map((h) => h.status)).toEqual(['pending', 'in_review', 'modeling', 'ready', 'shipped']);
    const adminId = final.history[1]?.by;
    expect(final.history.slice(1).every((h) => h.by === adminId && h.by !== alice.id)).toBe(true);
    await expectProblem(await putStatus(order.order_id, 'pending'), 409, 'invalid_transition');
    await expectProblem(await putStatus(order.order_id, 'cancelled'), 409, 'invalid_transition');
  });

  it('keeps each change in the history with its own time and admin, and answers the order as it now is', async () => {
    const order = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    const adminId = ((await (await get('/users/me', admin)).json()) as { id: string }).id;
    let history = order.history;
    let moved = 0;
    try {
      for (const status of ['in_review', 'modeling', 'cancelled']) {
        // Each change a few seconds after the one before, so every entry has a time of its own.
        clock.advanceSeconds(5);
        moved += 5;
        const res = await putStatus(order.order_id, status);
        expect(res.status).toBe(200);
        const answered = ((await res.json()) as { order: OrderBody }).order;
        expect(answered.status).toBe(status);
        expect(answered.updated_at).toMatch(/Z$/);
        expect(Date.parse(answered.updated_at)).toBeGreaterThan(Date.parse(history.at(-1)?.at ?? ''));
        // The entries before are kept as they were; the new one is this change, at the order's new updated_at.
        expect(answered.history).toEqual([...history, { status, at: answered.updated_at, by: adminId }]);
        history = answered.history;
      }
    } finally {
      clock.advanceSeconds(-moved);
    }
    const stored = ((await (await get(`/api/images/orders/${order.order_id}`, alice.headers)).json()) as { order: OrderBody }).order;
    expect(stored.history).toEqual(history);
    expect(stored.history.map((h) => h.status)).toEqual(['pending', 'in_review', 'modeling', 'cancelled']);
  });

  it('refuses skipping a step and anything after cancelled', async () => {
    const order = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    await expectProblem(await putStatus(order.order_id, 'modeling'), 409, 'invalid_transition');
    await expectProblem(await putStatus(order.order_id, 'pending'), 409);
    expect((await putStatus(order.order_id, 'cancelled')).status).toBe(200);
    await expectProblem(await putStatus(order.order_id, 'in_review'), 409);
  });

  it('is admin-only; an unknown status is 422, an unknown order 404', async () => {
    const order = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    await expectProblem(await putStatus(order.order_id, 'in_review', alice.headers), 403);
    await expectProblem(await putStatus(order.order_id, 'flying'), 422);
    await expectProblem(await putStatus('missing-order', 'in_review'), 404);
  });
});

describe('delete', () => {
  async function del(orderId: string, headers: Record<string, string>): Promise<Response> {
    return fetch(`${server.url}/api/images/orders/${orderId}`, { method: 'DELETE', headers });
  }

  it('removes a pending order and every stored file of it', async () => {
    const order = await createOrder(server.url, alice.headers, [filePart(jpg), filePart(ROCKET_JPG)]);
    const dir = path.join(server.dataDir, 'blobs', 'orders', order.order_id);
    expect(await filesUnder(dir)).toHaveLength(6);
    await expectProblem(await del(order.order_id, bob.headers), 404);
    const res = await del(order.order_id, alice.headers);
    expect(await res.json()).toEqual({ success: true, message: expect.any(String), order_id: order.order_id });
    expect(await filesUnder(dir)).toEqual([]);
    await expectProblem(await get(`/api/images/orders/${order.order_id}`, alice.headers), 404);
    await expectProblem(await get(order.files[0]?.urls.thumb ?? ''), 404);
  });

  it('removes a cancelled order, refuses one being modelled (409)', async () => {
    const cancelled = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    await putStatus(cancelled.order_id, 'cancelled');
    expect((await del(cancelled.order_id, alice.headers)).status).toBe(200);

    const busy = await createOrder(server.url, alice.headers, [filePart(jpg)]);
    await putStatus(busy.order_id, 'in_review');
    await putStatus(busy.order_id, 'modeling');
    await expectProblem(await del(busy.order_id, alice.headers), 409, 'order_not_deletable');
    expect(await filesUnder(path.join(server.dataDir, 'blobs', 'orders', busy.order_id))).toHaveLength(3);
  });
});

describe('account deletion', () => {
  it('DELETE /users/me removes the user\'s orders and files, whatever their status', async () => {
    const carol = await registerUser(server.url, 'carol');
    const a = await createOrder(server.url, carol.headers, [filePart(jpg)]);
    const b = await createOrder(server.url, carol.headers, [filePart(jpg)]);
    await putStatus(b.order_id, 'in_review');
    const res = await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: carol.headers });
    expect(res.status).toBeLessThan(300);
    const left = await server.ctx.db.kysely.selectFrom('custom_orders').select('order_id').where('user_id', '=', carol.id).execute();
    expect(left).toEqual([]);
    for (const o of [a, b]) expect(await filesUnder(path.join(server.dataDir, 'blobs', 'orders', o.order_id))).toEqual([]);
  });
});

describe('reference', () => {
  it('every custom-order route is in the OpenAPI document', async () => {
    const doc = (await (await get('/openapi.json')).json()) as { paths: Record<string, Record<string, unknown>> };
    for (const [route, method] of [
      ['/api/images/upload', 'post'],
      ['/api/images/orders', 'get'],
      ['/api/images/orders/{order_id}', 'get'],
      ['/api/images/orders/{order_id}', 'delete'],
      ['/api/images/orders/{order_id}/files/{file_id}', 'get'],
      ['/api/images/orders/{order_id}/status', 'put'],
      ['/admin/orders', 'get'],
    ] as const) {
      expect(doc.paths[route]?.[method], `${method} ${route}`).toBeDefined();
    }
  });
});
