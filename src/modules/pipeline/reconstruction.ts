/**
 * One run of the reconstruction, in the workspace job.ts made for it. The
 * photos are copied from the blob store into the workspace, then COLMAP runs
 * there on CPU, step by step, each step's output read for progress:
 *
 *   features  0.00-0.30  feature_extractor (copying the photos first)
 *   matching  0.30-0.55  exhaustive_matcher, or sequential_matcher past 50 photos
 *   mapping   0.55-0.85  mapper (sparse reconstruction)
 *   meshing   0.85-0.90  nothing yet: see below
 *   export    0.90-1.00  model_converter to PLY, then our own GLB from it
 *
 * Meshing: a surface needs dense stereo (CUDA) and a mesher (Poisson on the
 * dense cloud, or delaunay_mesher with CGAL). The Debian build this was
 * written against has neither, so the model is the sparse, coloured point
 * cloud, and this stage only says so. docs/pipeline.md has the details.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Context } from '../../context.js';
import { DomainError } from '../../errors.js';
import { abortWhy, PermanentJobError, type JobContext } from '../../platform/jobs/index.js';
import { checkColmap, ColmapNotFound, largestSparseModel, runColmap, type RunResult, type SparseModel } from './colmap.js';
import { pointCloudToGlb } from './glb.js';
import { parsePly, PlyError, type PointCloud } from './ply.js';
import { Progress } from './progress.js';
import {
  MODEL_FORMATS,
  MODEL_TYPES,
  modelKey,
  photoKey,
  resultKey,
  uploadPrefix,
  type ModelFile,
  type ModelFormat,
  type PipelineInput,
  type PipelineResult,
  type Stage,
} from './service.js';

/** Exhaustive matching compares every pair (n²/2); past this many photos, each photo is matched with its neighbours in upload order. */
export const EXHAUSTIVE_MAX_PHOTOS = 50;
/** Neighbours each photo is matched with by the sequential matcher. */
const SEQUENTIAL_OVERLAP = 10;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export class Reconstruction {
  private readonly progress: Progress;
  private readonly bin: string;

  constructor(
    private readonly ctx: Context,
    private readonly input: PipelineInput,
    private readonly job: JobContext,
    private readonly workspace: string,
    private readonly exhaustiveMaxPhotos: number,
  ) {
    this.progress = new Progress(job);
    this.bin = ctx.config.pipeline.colmapBin;
  }

  async run(): Promise<PipelineResult> {
    const earlier = await this.finishedEarlier();
    if (earlier) return earlier;
    const check = await checkColmap(this.bin);
    if (!check.ok) throw new PermanentJobError('colmap_unavailable', 'COLMAP is not installed where this job ran: install the Debian package colmap, or set COLMAP_BIN.');
    this.progress.set('features', 0);
    const images = path.join(this.workspace, 'images');
    await mkdir(images);
    await this.copyPhotos(images);

    const db = path.join(this.workspace, 'database.db');
    await this.extractFeatures(db, images);
    await this.matchFeatures(db);
    const model = await this.mapModel(db, images);

    // No surface with this build (no CUDA for dense stereo, no CGAL for delaunay_mesher): the point cloud is the model.
    this.progress.set('meshing', 0);
    this.progress.set('meshing', 1);

    const result = await this.exportModel(model, check.version);
    // The model is stored: the photos have done their work.
    await this.ctx.blobs.deletePrefix(`${uploadPrefix(this.input.upload_id)}/photos`);
    return result;
  }

  private async extractFeatures(db: string, images: string): Promise<void> {
    await this.step('features', 'feature_extractor', ['--database_path', db, '--image_path', images, '--SiftExtraction.use_gpu', '0', '--ImageReader.single_camera', '1'], (line) => {
      const m = /Processed file \[(\d+)\/(\d+)\]/.exec(line);
      return m ? Number(m[1]) / Number(m[2]) : null;
    });
  }

  /** Every pair of photos up to exhaustiveMaxPhotos; beyond that each photo with its SEQUENTIAL_OVERLAP neighbours. */
  private async matchFeatures(db: string): Promise<void> {
    const sequential = this.input.photos.length > this.exhaustiveMaxPhotos;
    const matcher = sequential
      ? ['sequential_matcher', '--database_path', db, '--SiftMatching.use_gpu', '0', '--SequentialMatching.overlap', String(SEQUENTIAL_OVERLAP)]
      : ['exhaustive_matcher', '--database_path', db, '--SiftMatching.use_gpu', '0'];
    await this.step('matching', matcher[0] as string, matcher.slice(1), (line) => {
      const block = /Matching block \[(\d+)\/(\d+), (\d+)\/(\d+)\]/.exec(line);
      if (block) return ((Number(block[1]) - 1) * Number(block[4]) + Number(block[3])) / (Number(block[2]) * Number(block[4]));
      const image = /Matching image \[(\d+)\/(\d+)\]/.exec(line);
      return image ? Number(image[1]) / Number(image[2]) : null;
    });
  }

  /** The sparse reconstruction; its largest model, or a permanent failure that says why when there is none. */
  private async mapModel(db: string, images: string): Promise<SparseModel> {
    const n = this.input.photos.length;
    const sparse = path.join(this.workspace, 'sparse');
    await mkdir(sparse);
    // A lower initial triangulation angle than COLMAP's 16°: photos taken close together (a short
    // walk around an object) have small baselines, and with 16° no initial pair is found at all.
    const mapped = await this.step(
      'mapping',
      'mapper',
      ['--database_path', db, '--image_path', images, '--output_path', sparse, '--Mapper.init_min_tri_angle', '4'],
      (line) => {
        const m = /Registering image #\d+ \((\d+)\)/.exec(line);
        return m ? Number(m[1]) / n : null;
      },
      true,
    );
    const model = await largestSparseModel(sparse);
    if (model) return model;
    const why = mapped.tail.find((l) => /No good initial image pair found/i.test(l)) ? ' No pair of photos overlapped enough to start from.' : '';
    throw new PermanentJobError(
      'reconstruction_failed',
      `COLMAP could not reconstruct a model from these ${n} photos.${why} Take the photos around the object with plenty of overlap (each part seen in 3 or more photos) and some sideways movement between them.`,
    );
  }

  /** The model as PLY and GLB in the blob store, and the job's result beside them. */
  private async exportModel(model: SparseModel, colmapVersion: string): Promise<PipelineResult> {
    const { input } = this;
    this.progress.set('export', 0);
    const plyPath = path.join(this.workspace, 'model.ply');
    await this.step('export', 'model_converter', ['--input_path', model.dir, '--output_path', plyPath, '--output_type', 'PLY'], () => null);
    const ply = await readFile(plyPath);
    let cloud: PointCloud;
    try {
      cloud = parsePly(ply);
    } catch (err) {
      if (err instanceof PlyError) throw new PermanentJobError('export_failed', `COLMAP wrote a model this server cannot read: ${err.message}.`);
      throw err;
    }
    if (cloud.count === 0) throw new PermanentJobError('reconstruction_failed', `COLMAP placed ${model.registered} photos but triangulated no points from them.`);
    this.progress.set('export', 0.5);
    const glb = pointCloudToGlb(cloud, `Kiln photogrammetry (${colmapVersion})`);
    const files = await this.store({ ply, glb });
    const result: PipelineResult = {
      stage: 'export',
      upload_id: input.upload_id,
      name: input.name,
      photos: input.photos.length,
      registered_photos: model.registered,
      points: cloud.count,
      model: 'point_cloud',
      colmap: colmapVersion,
      files,
      finished_model_at: this.ctx.clock.now().toISOString(),
    };
    await this.ctx.blobs.put(resultKey(input.upload_id), Buffer.from(JSON.stringify(result)), 'application/json');
    this.progress.set('export', 1);
    await this.progress.flush();
    return result;
  }

  /**
   * A run that stored the model and removed the photos, then died before its
   * job was marked completed (a crash, a shutdown in that instant), is run
   * again with no photos: it completes from what the first run kept.
   */
  private async finishedEarlier(): Promise<PipelineResult | null> {
    const key = resultKey(this.input.upload_id);
    if (!(await this.ctx.blobs.stat(key))) return null;
    this.job.log.info('the model of this job was stored by an earlier run');
    return JSON.parse((await this.ctx.blobs.readAll(key)).toString('utf8')) as PipelineResult;
  }

  private async copyPhotos(images: string): Promise<void> {
    const { input } = this;
    for (const [i, name] of input.photos.entries()) {
      let source;
      try {
        source = await this.ctx.blobs.read(photoKey(input.upload_id, name));
      } catch (err) {
        if (err instanceof DomainError && err.status === 404) {
          throw new PermanentJobError('photos_missing', 'The photos of this upload are no longer stored; upload them again.');
        }
        throw err;
      }
      // Our own names (0001.jpg …), never a client's.
      await pipeline(source, createWriteStream(path.join(images, name), { flags: 'wx' }), { signal: this.job.signal });
      this.progress.set('features', (0.15 * (i + 1)) / input.photos.length);
    }
  }

  /**
   * Runs one COLMAP command. `fraction` turns an output line into how far the
   * step is (or null). A non-zero exit fails the job, unless `mayFail`: the
   * mapper exits 1 when it finds no model, which the caller explains better.
   */
  private async step(stage: Stage, command: string, args: string[], fraction: (line: string) => number | null, mayFail = false): Promise<RunResult> {
    this.progress.set(stage, 0);
    // The first 15% of `features` was copying the photos in.
    const from = stage === 'features' ? 0.15 : 0;
    let result: RunResult;
    try {
      result = await runColmap(this.bin, [command, ...args], {
        cwd: this.workspace,
        signal: this.job.signal,
        onLine: (line) => {
          const f = fraction(line);
          if (f !== null) this.progress.set(stage, from + (1 - from) * f);
        },
      });
    } catch (err) {
      if (err instanceof ColmapNotFound) throw new PermanentJobError('colmap_unavailable', 'COLMAP could not be started where this job ran: install the Debian package colmap, or set COLMAP_BIN.');
      throw err;
    }
    // Killed on abort: the runner has already ended the attempt (timeout, shutdown); say so for the log.
    if (this.job.signal.aborted) throw new Error(`COLMAP ${command} stopped: ${abortWhy(this.job.signal) ?? 'aborted'}`);
    if (result.signal !== null || (result.code !== 0 && !mayFail)) {
      this.job.log.warn({ command, code: result.code, signal: result.signal, output: result.tail }, 'COLMAP step failed');
      const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
      throw new PermanentJobError('colmap_failed', `COLMAP ${command} ${how} at the ${stage} stage.`);
    }
    if (result.code !== 0) this.job.log.info({ command, code: result.code, output: result.tail.slice(-5) }, 'COLMAP step ended without a result');
    await this.progress.flush();
    return result;
  }

  private async store(models: Record<ModelFormat, Buffer>): Promise<Record<ModelFormat, ModelFile>> {
    const files = {} as Record<ModelFormat, ModelFile>;
    for (const format of MODEL_FORMATS) {
      const data = models[format];
      await this.ctx.blobs.put(modelKey(this.input.upload_id, format), data, MODEL_TYPES[format]);
      files[format] = { bytes: data.length, etag: sha256(data) };
    }
    return files;
  }
}
