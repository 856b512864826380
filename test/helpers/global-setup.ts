/** Runs once before every test file: says plainly which real services the suite will use. */
export default function setup(): void {
  const missing = [
    ['TEST_DATABASE_URL', 'PostgreSQL'],
    ['TEST_REDIS_URL', 'Redis'],
  ].filter(([name]) => !process.env[name as string]);
  for (const [name, what] of missing) {
    process.stderr.write(`\nNOTICE: ${name} is not set: tests that need ${what} are skipped (.ci/run sets it).\n`);
  }
}
