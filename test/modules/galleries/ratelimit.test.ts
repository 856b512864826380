import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectProblem } from '../../helpers/problem.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';

// Small, so the limit and not the upload sets the pace.
const ROCKET = fixture('rocket_small_640x427.jpg');
const LIMIT = 3;

let server: TestServer;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_UPLOAD: String(LIMIT) });
  alice = await registerUser(server.url);
  bob = await registerUser(server.url);
});
afterAll(async () => server.close());

const upload = (project: string, user: TestUser) =>
  postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'photo.jpg', data: ROCKET, type: 'image/jpeg' }], user.headers);

describe('RATE_LIMIT_UPLOAD on POST /projects/{project_id}/images', () => {
  it('allows RATE_LIMIT_UPLOAD uploads a minute per user, then 429 with Retry-After; another user still uploads', async () => {
    // Each to its own project: the budget is the user's, not the project's.
    for (let i = 0; i < LIMIT; i++) expect((await upload(`${alice.username}-${i}`, alice)).status).toBe(201);

    const refused = await upload(`${alice.username}-over`, alice);
    const retryAfter = Number(refused.headers.get('retry-after'));
    await expectProblem(refused, 429, 'rate_limited');
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Nothing of the refused upload was kept: its project was never made.
    expect((await fetch(`${server.url}/projects/${alice.username}-over/images`)).status).toBe(404);

    expect((await upload(`${bob.username}-0`, bob)).status).toBe(201);
    // The upload budget is its own: the refused user's other requests still answer.
    expect((await fetch(`${server.url}/projects/${alice.username}-0/images`, { headers: alice.headers })).status).toBe(200);
  });
});
