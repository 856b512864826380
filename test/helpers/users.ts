import { randomBytes } from 'node:crypto';

export interface TestUser {
  id: string;
  email: string;
  username: string;
  password: string;
  token: string;
  headers: { authorization: string };
}

/** Registers a user through the API and logs it in; returns its bearer token. */
export async function registerUser(baseUrl: string, name = `u${randomBytes(4).toString('hex')}`): Promise<TestUser> {
  const email = `${name}@example.com`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const reg = await fetch(`${baseUrl}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, username: name, password }),
  });
  if (reg.status !== 201) throw new Error(`register failed: ${reg.status} ${await reg.text()}`);
  const user = (await reg.json()) as { id: string };
  const login = await fetch(`${baseUrl}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${await login.text()}`);
  const { access_token } = (await login.json()) as { access_token: string };
  return { id: user.id, email, username: name, password, token: access_token, headers: { authorization: `Bearer ${access_token}` } };
}

/** Logs an existing account in (an admin from ADMIN_EMAIL / ADMIN_PASSWORD, say) and returns its bearer header. */
export async function loginHeaders(baseUrl: string, email: string, password: string): Promise<{ authorization: string }> {
  const res = await fetch(`${baseUrl}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (res.status !== 200) throw new Error(`login of ${email} failed: ${res.status} ${await res.text()}`);
  const { access_token } = (await res.json()) as { access_token: string };
  return { authorization: `Bearer ${access_token}` };
}
