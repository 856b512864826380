/** The PLY reader and the GLB writer on their own, over the PLY variants COLMAP and others write. */
import { describe, expect, it } from 'vitest';
import { pointCloudToGlb } from '../../../src/modules/pipeline/glb.js';
import { parsePly, PlyError } from '../../../src/modules/pipeline/ply.js';
import { checkGlb } from './helpers.js';

function binaryPly(little: boolean, withNormals: boolean): Buffer {
  const props = ['property float x', 'property float y', 'property float z', ...(withNormals ? ['property float nx', 'property float ny', 'property float nz'] : []), 'property uchar red', 'property uchar green', 'property uchar blue'];
  const header = Buffer.from(['ply', `format ${little ? 'binary_little_endian' : 'binary_big_endian'} 1.0`, 'comment made by a test', 'element vertex 2', ...props, 'element face 1', 'property list uchar int vertex_indices', 'end_header', ''].join('\n'), 'latin1');
  const stride = withNormals ? 27 : 15;
  const body = Buffer.alloc(2 * stride + 1 + 3 * 4);
  const points = [[1.5, -2, 3.25, 10, 20, 30], [-4, 5.5, 0, 255, 0, 128]];
  points.forEach((p, i) => {
    let at = i * stride;
    for (const v of p.slice(0, 3)) at = little ? body.writeFloatLE(v as number, at) : body.writeFloatBE(v as number, at);
    if (withNormals) for (let k = 0; k < 3; k++) at = little ? body.writeFloatLE(0, at) : body.writeFloatBE(0, at);
    for (const c of p.slice(3)) at = body.writeUInt8(c as number, at);
  });
  // One face of three vertices, which the reader must step over.
  let at = body.writeUInt8(3, 2 * stride);
  for (const v of [0, 1, 0]) at = little ? body.writeInt32LE(v, at) : body.writeInt32BE(v, at);
  return Buffer.concat([header, body]);
}

describe('parsePly', () => {
  for (const little of [true, false]) {
    for (const normals of [false, true]) {
      it(`reads ${little ? 'little' : 'big'}-endian binary ${normals ? 'with' : 'without'} normals, skipping faces`, () => {
        const cloud = parsePly(binaryPly(little, normals));
        expect(cloud.count).toBe(2);
        expect([...cloud.positions]).toEqual([1.5, -2, 3.25, -4, 5.5, 0]);
        expect([...(cloud.colors ?? [])]).toEqual([10, 20, 30, 255, 0, 128]);
      });
    }
  }

  it('reads ASCII, in the property order the header gives, with float colours scaled to bytes', () => {
    const text = ['ply', 'format ascii 1.0', 'element vertex 2', 'property float red', 'property float green', 'property float blue', 'property double z', 'property double y', 'property double x', 'end_header', '1 0 0.5 3 2 1', '0 1 0 -3 -2 -1', ''].join('\n');
    const cloud = parsePly(Buffer.from(text));
    expect([...cloud.positions]).toEqual([1, 2, 3, -1, -2, -3]);
    expect([...(cloud.colors ?? [])]).toEqual([255, 0, 128, 0, 255, 0]);
  });

  it('reads a cloud without colour', () => {
    const cloud = parsePly(Buffer.from('ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 2 3\n'));
    expect(cloud.colors).toBeNull();
    expect([...cloud.positions]).toEqual([1, 2, 3]);
  });

  it('refuses what is not a PLY, a body shorter than its header says, and vertices without x, y, z', () => {
    expect(() => parsePly(Buffer.from('hello'))).toThrow(PlyError);
    expect(() => parsePly(binaryPly(true, false).subarray(0, -20))).toThrow(/shorter/);
    expect(() => parsePly(Buffer.from('ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n'))).toThrow(/x, y, z/);
  });
});

describe('pointCloudToGlb', () => {
  it('writes a valid glTF 2.0 binary of POINTS with exact bounds and RGBA colours', () => {
    const cloud = parsePly(binaryPly(true, false));
    const { json, bin } = checkGlb(pointCloudToGlb(cloud, 'test'));
    expect(json.accessors[0]).toMatchObject({ count: 2, min: [-4, -2, 0], max: [1.5, 5.5, 3.25] });
    expect([...bin.subarray(24, 32)]).toEqual([10, 20, 30, 255, 255, 0, 128, 255]);
  });

  it('pads the JSON chunk with spaces and the BIN chunk with zeros to 4 bytes, for any point count', () => {
    for (let count = 1; count <= 5; count++) {
      const cloud = { count, positions: new Float32Array(count * 3).map((_, i) => i / 7), colors: null };
      const glb = pointCloudToGlb(cloud, 'x'.repeat(count)); // vary the JSON length too
      const { json } = checkGlb(glb);
      expect(json.meshes[0]?.primitives[0]?.attributes).toEqual({ POSITION: 0 });
    }
  });
});
