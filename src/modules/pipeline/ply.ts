/**
 * Reading the point cloud COLMAP's model_converter writes (`--output_type
 * PLY`). COLMAP 3.8 writes binary_little_endian with float x, y, z (and
 * nx, ny, nz in some versions) and uchar red, green, blue; this reads what
 * the header declares instead of assuming that layout: any of the three PLY
 * formats, any scalar property types, in any order, with or without colour.
 * Only the `vertex` element is kept; list properties (faces) are skipped.
 */

export interface PointCloud {
  count: number;
  /** x, y, z per point. */
  positions: Float32Array;
  /** r, g, b per point (0-255), or null when the file has no colour. */
  colors: Uint8Array | null;
}

export class PlyError extends Error {}

type Scalar = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64';

const SCALARS: Readonly<Record<string, Scalar>> = {
  char: 'int8', int8: 'int8', uchar: 'uint8', uint8: 'uint8',
  short: 'int16', int16: 'int16', ushort: 'uint16', uint16: 'uint16',
  int: 'int32', int32: 'int32', uint: 'uint32', uint32: 'uint32',
  float: 'float32', float32: 'float32', double: 'float64', float64: 'float64',
};

const SIZES: Readonly<Record<Scalar, number>> = { int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, float64: 8 };

type Property = { name: string; kind: 'scalar'; type: Scalar } | { name: string; kind: 'list'; countType: Scalar; itemType: Scalar };

interface Element {
  name: string;
  count: number;
  properties: Property[];
}

type Format = 'ascii' | 'binary_little_endian' | 'binary_big_endian';

const MAX_HEADER_BYTES = 64 * 1024;

function scalar(name: string | undefined): Scalar {
  const type = name === undefined ? undefined : SCALARS[name];
  if (!type) throw new PlyError(`unknown PLY type ${JSON.stringify(name)}`);
  return type;
}

function parseHeader(data: Buffer): { format: Format; elements: Element[]; bodyStart: number } {
  const end = data.indexOf('end_header', 0, 'latin1');
  if (data.subarray(0, 4).toString('latin1') !== 'ply\n' && data.subarray(0, 5).toString('latin1') !== 'ply\r\n') throw new PlyError('not a PLY file');
  if (end < 0 || end > MAX_HEADER_BYTES) throw new PlyError('PLY header has no end_header');
  const newline = data.indexOf(0x0a, end);
  if (newline < 0) throw new PlyError('PLY header is cut short');
  const lines = data.subarray(0, end).toString('latin1').split(/\r?\n/);
  let format: Format | null = null;
  const elements: Element[] = [];
  for (const line of lines.slice(1)) {
    const words = line.trim().split(/\s+/);
    if (words[0] === 'format') {
      if (words[1] !== 'ascii' && words[1] !== 'binary_little_endian' && words[1] !== 'binary_big_endian') throw new PlyError(`unknown PLY format ${words[1]}`);
      format = words[1];
    } else if (words[0] === 'element') {
      const count = Number(words[2]);
      if (!Number.isSafeInteger(count) || count < 0) throw new PlyError(`bad element count in "${line}"`);
      elements.push({ name: words[1] ?? '', count, properties: [] });
    } else if (words[0] === 'property') {
      const element = elements.at(-1);
      if (!element) throw new PlyError('PLY property before any element');
      if (words[1] === 'list') element.properties.push({ name: words[4] ?? '', kind: 'list', countType: scalar(words[2]), itemType: scalar(words[3]) });
      else element.properties.push({ name: words[2] ?? '', kind: 'scalar', type: scalar(words[1]) });
    }
    // comment and obj_info lines carry nothing we need
  }
  if (!format) throw new PlyError('PLY header has no format line');
  return { format, elements, bodyStart: newline + 1 };
}

/** Reads scalars one after another from a binary body. */
class BinaryReader {
  offset: number;
  constructor(
    private readonly view: DataView,
    start: number,
    private readonly little: boolean,
  ) {
    this.offset = start;
  }

  read(type: Scalar): number {
    const size = SIZES[type];
    if (this.offset + size > this.view.byteLength) throw new PlyError('PLY body is shorter than its header says');
    const at = this.offset;
    this.offset += size;
    switch (type) {
      case 'int8': return this.view.getInt8(at);
      case 'uint8': return this.view.getUint8(at);
      case 'int16': return this.view.getInt16(at, this.little);
      case 'uint16': return this.view.getUint16(at, this.little);
      case 'int32': return this.view.getInt32(at, this.little);
      case 'uint32': return this.view.getUint32(at, this.little);
      case 'float32': return this.view.getFloat32(at, this.little);
      case 'float64': return this.view.getFloat64(at, this.little);
    }
  }
}

/** Reads whitespace-separated numbers from an ASCII body. */
class AsciiReader {
  private readonly words: string[];
  private at = 0;
  constructor(text: string) {
    this.words = text.split(/\s+/).filter((w) => w !== '');
  }

  read(): number {
    const word = this.words[this.at++];
    const n = Number(word);
    if (word === undefined || Number.isNaN(n)) throw new PlyError('PLY body is shorter than its header says or not numeric');
    return n;
  }
}

/** Colour channels as 0-255: 8-bit integers as they are, floats (0-1) scaled, 16-bit shifted down. */
function toByte(value: number, type: Scalar): number {
  if (type === 'float32' || type === 'float64') return Math.max(0, Math.min(255, Math.round(value * 255)));
  if (type === 'uint16' || type === 'int16') return Math.max(0, Math.min(255, value >> 8));
  return Math.max(0, Math.min(255, value));
}

export function parsePly(data: Buffer): PointCloud {
  const { format, elements, bodyStart } = parseHeader(data);
  const binary = format !== 'ascii' ? new BinaryReader(new DataView(data.buffer, data.byteOffset, data.byteLength), bodyStart, format === 'binary_little_endian') : null;
  const ascii = binary ? null : new AsciiReader(data.subarray(bodyStart).toString('latin1'));
  const read = (type: Scalar): number => (binary ? binary.read(type) : (ascii as AsciiReader).read());

  let cloud: PointCloud | null = null;
  for (const element of elements) {
    const isVertex = element.name === 'vertex';
    const index = (name: string) => element.properties.findIndex((p) => p.kind === 'scalar' && p.name === name);
    const [ix, iy, iz] = [index('x'), index('y'), index('z')];
    const rgb = [index('red'), index('green'), index('blue')];
    const hasColor = rgb.every((i) => i >= 0);
    if (isVertex && (ix < 0 || iy < 0 || iz < 0)) throw new PlyError('PLY vertices have no x, y, z');
    const positions = isVertex ? new Float32Array(element.count * 3) : null;
    const colors = isVertex && hasColor ? new Uint8Array(element.count * 3) : null;
    const values = new Array<number>(element.properties.length).fill(0);
    for (let v = 0; v < element.count; v++) {
      element.properties.forEach((p, i) => {
        if (p.kind === 'list') {
          const n = read(p.countType);
          for (let k = 0; k < n; k++) read(p.itemType);
        } else {
          values[i] = read(p.type);
        }
      });
      if (positions) {
        positions[v * 3] = values[ix] as number;
        positions[v * 3 + 1] = values[iy] as number;
        positions[v * 3 + 2] = values[iz] as number;
      }
      if (colors) {
        rgb.forEach((i, c) => {
          const p = element.properties[i] as Extract<Property, { kind: 'scalar' }>;
          colors[v * 3 + c] = toByte(values[i] as number, p.type);
        });
      }
    }
    if (positions) cloud = { count: element.count, positions, colors };
  }
  if (!cloud) throw new PlyError('PLY file has no vertex element');
  return cloud;
}
