import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { tempDataDir } from '../../helpers/config.js';

/** loadConfig over an empty directory (no .env) with just these variables. */
function load(env: Record<string, string>) {
  const { dir, cleanup } = tempDataDir();
  try {
    return loadConfig(env, dir);
  } finally {
    cleanup();
  }
}

function refusal(env: Record<string, string>): ConfigError {
  try {
    load(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(env)}`);
}

describe('STRIPE_* settings', () => {
  it('leave payments off when unset', () => {
    expect(load({}).stripe).toEqual({ key: undefined, apiBase: undefined, webhookSecret: undefined });
  });

  it('are read as given', () => {
    const stripe = load({ STRIPE_KEY: 'sk_test_abc123', STRIPE_API_BASE: 'http://127.0.0.1:12111', STRIPE_WEBHOOK_SECRET: 'whsec_xyz' }).stripe;
    expect(stripe).toEqual({ key: 'sk_test_abc123', apiBase: 'http://127.0.0.1:12111', webhookSecret: 'whsec_xyz' });
    expect(load({ STRIPE_KEY: 'rk_live_abc' }).stripe.key).toBe('rk_live_abc');
  });

  it('refuse a publishable key, naming STRIPE_KEY', () => {
    const err = refusal({ STRIPE_KEY: 'pk_test_abc123' });
    expect(err.variable).toBe('STRIPE_KEY');
    expect(err.message).toMatch(/secret key/);
  });

  it('refuse an STRIPE_API_BASE that is not an http(s) URL, or has a path', () => {
    expect(refusal({ STRIPE_API_BASE: 'not a url' }).variable).toBe('STRIPE_API_BASE');
    expect(refusal({ STRIPE_API_BASE: 'ftp://stripe.test' }).variable).toBe('STRIPE_API_BASE');
    const withPath = refusal({ STRIPE_API_BASE: 'http://127.0.0.1:12111/v1' });
    expect(withPath.variable).toBe('STRIPE_API_BASE');
    expect(withPath.message).toMatch(/adds \/v1\//);
    expect(load({ STRIPE_API_BASE: 'https://stripe.test/' }).stripe.apiBase).toBe('https://stripe.test/');
  });
});
