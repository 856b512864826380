/** How many blob deletes of one clean-up run at once. */
export const BLOB_DELETES_AT_ONCE = 16;

/**
 * Runs `task` for every item, at most `limit` at a time, and resolves once
 * all have ended. Every item is tried: when any failed, it rejects with the
 * first failure once all have ended (none is left running behind the
 * caller's back). For many small independent I/O steps (the files of an
 * account's 20000 images on its deletion), where one at a time costs a
 * round trip each and all at once would open thousands of files or S3
 * requests together.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
}
