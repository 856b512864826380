import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll gives up after 1 s by default: too soon for a sign-in through a browser on a loaded machine.
    expect: { poll: { timeout: 10_000 } },
    // Test files start real servers and child processes; two cores run two files at a time.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
