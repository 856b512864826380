/** Without COLMAP the pipeline says so (503) before reading the upload; runs everywhere, COLMAP installed or not. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { expectNothingStored, expectProblem, photoParts, startPipeline, syntheticViews, uploadPhotos, type PipelineServer } from './helpers.js';

describe('COLMAP_BIN pointing nowhere', () => {
  let server: PipelineServer;
  let user: TestUser;
  beforeAll(async () => {
    server = await startPipeline({ COLMAP_BIN: '/nonexistent/colmap' });
    user = await registerUser(server.url, 'dora');
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers 503 colmap_unavailable with a sentence naming COLMAP_BIN, and stores nothing', async () => {
    const views = await syntheticViews(8);
    for (let i = 0; i < 2; i++) {
      // Twice: the second answer comes from the remembered check, and must be the same.
      const problem = await expectProblem(await uploadPhotos(server.url, user.headers, photoParts(views)), 503, 'colmap_unavailable');
      expect(problem.detail).toMatch(/^The photogrammetry pipeline needs COLMAP, .*COLMAP_BIN.*\.$/);
      expect(problem.detail).toContain('colmap');
      await expectNothingStored(server);
    }
  });

  it('still asks for credentials first: 401 without them', async () => {
    await expectProblem(await uploadPhotos(server.url, {}, photoParts(await syntheticViews(8))), 401);
  });
});

describe('COLMAP_BIN in the configuration', () => {
  it('defaults to colmap on PATH, takes an absolute path, refuses a relative one naming the variable', () => {
    expect(loadConfig({}, '/tmp').pipeline).toEqual({ colmapBin: 'colmap', timeoutMinutes: 120 });
    expect(loadConfig({ COLMAP_BIN: '/opt/colmap/bin/colmap', PIPELINE_TIMEOUT_MINUTES: '30' }, '/tmp').pipeline).toEqual({ colmapBin: '/opt/colmap/bin/colmap', timeoutMinutes: 30 });
    expect(() => loadConfig({ COLMAP_BIN: 'bin/colmap' }, '/tmp')).toThrow(ConfigError);
    expect(() => loadConfig({ COLMAP_BIN: 'bin/colmap' }, '/tmp')).toThrow(/^COLMAP_BIN: /);
    expect(() => loadConfig({ PIPELINE_TIMEOUT_MINUTES: '0' }, '/tmp')).toThrow(/^PIPELINE_TIMEOUT_MINUTES: /);
  });
});
