/**
 * A point cloud as glTF 2.0 binary (GLB): one mesh with one primitive of
 * mode 0 (POINTS), POSITION as float32 VEC3 with its min/max (required for
 * POSITION by the spec) and, when the cloud has colour, COLOR_0 as
 * normalized unsigned byte VEC4 (alpha 255; byte colours must be VEC4-sized
 * in 4-byte strides, and VEC4 needs no padding). Layout: 12-byte header, a
 * JSON chunk padded with spaces, a BIN chunk padded with zeros, every chunk
 * 4-byte aligned.
 */
import type { PointCloud } from './ply.js';

const MAGIC = 0x46546c67; // "glTF"
const CHUNK_JSON = 0x4e4f534a; // "JSON"
const CHUNK_BIN = 0x004e4942; // "BIN\0"
const FLOAT = 5126;
const UNSIGNED_BYTE = 5121;
const ARRAY_BUFFER = 34962;
const POINTS = 0;

function pad4(n: number): number {
  return (n + 3) & ~3;
}

export function pointCloudToGlb(cloud: PointCloud, generator: string): Buffer {
  const { count, positions, colors } = cloud;
  const min = [Infinity, Infinity, Infinity];
  const max = [-Infinity, -Infinity, -Infinity];
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < 3; c++) {
      const v = positions[i * 3 + c] as number;
      if (v < (min[c] as number)) min[c] = v;
      if (v > (max[c] as number)) max[c] = v;
    }
  }
  // min/max must be the float32 values as stored, which these already are (read back from the Float32Array).
  const positionBytes = count * 12;
  const colorBytes = colors ? count * 4 : 0;
  const bin = Buffer.alloc(pad4(positionBytes + colorBytes));
  Buffer.from(positions.buffer, positions.byteOffset, positionBytes).copy(bin, 0);
  if (colors) {
    for (let i = 0; i < count; i++) {
      const at = positionBytes + i * 4;
      bin[at] = colors[i * 3] as number;
      bin[at + 1] = colors[i * 3 + 1] as number;
      bin[at + 2] = colors[i * 3 + 2] as number;
      bin[at + 3] = 255;
    }
  }

  const bufferViews: object[] = [{ buffer: 0, byteOffset: 0, byteLength: positionBytes, target: ARRAY_BUFFER }];
  const accessors: object[] = [{ bufferView: 0, componentType: FLOAT, count, type: 'VEC3', min, max }];
  const attributes: Record<string, number> = { POSITION: 0 };
  if (colors) {
    bufferViews.push({ buffer: 0, byteOffset: positionBytes, byteLength: colorBytes, target: ARRAY_BUFFER });
    accessors.push({ bufferView: 1, componentType: UNSIGNED_BYTE, normalized: true, count, type: 'VEC4' });
    attributes.COLOR_0 = 1;
  }
  const gltf = {
    asset: { version: '2.0', generator },
    scene: 0,
    scenes: [{ nodes: [0] }],
    nodes: [{ mesh: 0 }],
    meshes: [{ primitives: [{ attributes, mode: POINTS }] }],
    accessors,
    bufferViews,
    buffers: [{ byteLength: bin.length }],
  };
  const jsonText = Buffer.from(JSON.stringify(gltf), 'utf8');
  const json = Buffer.alloc(pad4(jsonText.length), 0x20);
  jsonText.copy(json);

  const total = 12 + 8 + json.length + 8 + bin.length;
  const header = Buffer.alloc(12);
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt32LE(2, 4);
  header.writeUInt32LE(total, 8);
  const chunk = (type: number, body: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(body.length, 0);
    head.writeUInt32LE(type, 4);
    return [head, body];
  };
  return Buffer.concat([header, ...chunk(CHUNK_JSON, json), ...chunk(CHUNK_BIN, bin)], total);
}
