import { randomBytes } from 'node:crypto';
import type { Clock } from '../../src/clock.js';

/** A clock tests can move forward. */
export class TestClock implements Clock {
  private offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advanceMinutes(minutes: number): void {
    this.offsetMs += minutes * 60_000;
  }
  advanceSeconds(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}

export interface Answer<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** JSON in, JSON (or nothing) out. */
export async function call<T = Record<string, unknown>>(
  baseUrl: string,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as T };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export interface Account {
  id: string;
  email: string;
  username: string;
  password: string;
}

export function newAccountFields(): Omit<Account, 'id'> {
  const name = `u${randomBytes(5).toString('hex')}`;
  return { email: `${name}@Example.com`, username: name, password: `pw-${randomBytes(6).toString('hex')}` };
}

export async function register(baseUrl: string): Promise<Account> {
  const fields = newAccountFields();
  const res = await call<{ id: string }>(baseUrl, 'POST', '/auth/register', { body: fields });
  if (res.status !== 201) throw new Error(`register: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, ...fields };
}

export interface Pair {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

export async function login(baseUrl: string, account: Account, rememberMe?: boolean): Promise<Pair> {
  const res = await call<Pair>(baseUrl, 'POST', '/auth/login', {
    body: { email: account.email, password: account.password, ...(rememberMe === undefined ? {} : { remember_me: rememberMe }) },
  });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
