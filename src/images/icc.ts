/**
 * Recognises an embedded ICC profile that describes sRGB itself. Converting
 * sRGB pixels to sRGB is the identity, yet libvips runs the full lcms
 * transform for it: on a 4 MP camera photo carrying the common sRGB profile
 * that is 55 of the decode's 85 ms on one core, for pixels that come out
 * byte-identical (docs/performance.md, "Upload path"). Cameras and editors
 * embed such a profile routinely, so the decode skips the transform when,
 * and only when, the profile is a plain matrix/TRC RGB profile whose
 * colorants and tone curves are sRGB's. Anything else (Display P3, Adobe RGB,
 * LUT-based profiles, a damaged profile) is converted as before.
 */

/** sRGB's primaries adapted to the D50 connection space, as every sRGB matrix profile carries them. */
const SRGB_COLORANTS: Record<'rXYZ' | 'gXYZ' | 'bXYZ', readonly [number, number, number]> = {
  rXYZ: [0.4361, 0.2225, 0.0139],
  gXYZ: [0.3851, 0.7169, 0.0971],
  bXYZ: [0.1431, 0.0606, 0.7141],
};
/** Profiles round the colorants to s15Fixed16 after their own adaptation; real sRGB profiles sit within 0.001. */
const COLORANT_TOLERANCE = 0.003;
/** In linear light. A plain gamma 2.2 curve is 0.0036 away from sRGB at 50% grey, so it is (rightly) converted. */
const CURVE_TOLERANCE = 0.002;
const CURVE_SAMPLES = 64;

interface Tag {
  offset: number;
  size: number;
}

function tagTable(icc: Buffer): Map<string, Tag> | null {
  if (icc.length < 132) return null;
  const count = icc.readUInt32BE(128);
  if (count > 200 || 132 + count * 12 > icc.length) return null;
  const tags = new Map<string, Tag>();
  for (let i = 0; i < count; i++) {
    const at = 132 + i * 12;
    const offset = icc.readUInt32BE(at + 4);
    const size = icc.readUInt32BE(at + 8);
    if (offset + size > icc.length || size < 8) return null;
    tags.set(icc.toString('latin1', at, at + 4), { offset, size });
  }
  return tags;
}

const s15Fixed16 = (icc: Buffer, at: number): number => icc.readInt32BE(at) / 65536;

function colorantMatches(icc: Buffer, tag: Tag | undefined, expected: readonly [number, number, number]): boolean {
  if (!tag || tag.size < 20 || icc.toString('latin1', tag.offset, tag.offset + 4) !== 'XYZ ') return false;
  return expected.every((v, i) => Math.abs(s15Fixed16(icc, tag.offset + 8 + i * 4) - v) <= COLORANT_TOLERANCE);
}

/** sRGB's transfer function: encoded value in [0, 1] to linear light. */
export function srgbToLinear(v: number): number {
  return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}

/** The tone curve of a `curv` or `para` tag as a function, or null when the tag is neither or is malformed. */
function toneCurve(icc: Buffer, tag: Tag | undefined): ((v: number) => number) | null {
  if (!tag) return null;
  const type = icc.toString('latin1', tag.offset, tag.offset + 4);
  const end = tag.offset + tag.size;
  if (type === 'curv') {
    if (tag.size < 12) return null;
    const n = icc.readUInt32BE(tag.offset + 8);
    const first = tag.offset + 12;
    if (first + n * 2 > end) return null;
    if (n === 0) return (v) => v;
    if (n === 1) {
      const gamma = icc.readUInt16BE(first) / 256;
      return (v) => v ** gamma;
    }
    return (v) => {
      // Linear interpolation between table entries, as lcms does for a sampled curve.
      const x = v * (n - 1);
      const i = Math.min(Math.floor(x), n - 2);
      const a = icc.readUInt16BE(first + i * 2) / 65535;
      const b = icc.readUInt16BE(first + (i + 1) * 2) / 65535;
      return a + (b - a) * (x - i);
    };
  }
  if (type === 'para') {
    if (tag.size < 12) return null;
    const kind = icc.readUInt16BE(tag.offset + 8);
    const arity = [1, 3, 4, 5, 7][kind];
    if (arity === undefined || tag.offset + 12 + arity * 4 > end) return null;
    const p = Array.from({ length: arity }, (_, i) => s15Fixed16(icc, tag.offset + 12 + i * 4));
    const [g = 1, a = 1, b = 0, c = 0, d = 0, e = 0, f = 0] = p;
    switch (kind) {
      case 0:
        return (v) => v ** g;
      case 1:
        return (v) => (v >= -b / a ? (a * v + b) ** g : 0);
      case 2:
        return (v) => (v >= -b / a ? (a * v + b) ** g + c : c);
      case 3:
        return (v) => (v >= d ? (a * v + b) ** g : c * v);
      default:
        return (v) => (v >= d ? (a * v + b) ** g + e : c * v + f);
    }
  }
  return null;
}

function curveIsSrgb(curve: ((v: number) => number) | null): boolean {
  if (!curve) return false;
  for (let i = 0; i <= CURVE_SAMPLES; i++) {
    const v = i / CURVE_SAMPLES;
    if (!(Math.abs(curve(v) - srgbToLinear(v)) <= CURVE_TOLERANCE)) return false;
  }
  return true;
}

/**
 * True when converting from this profile to sRGB would change no pixel: an
 * RGB display or input profile to the XYZ connection space, with no lookup
 * tables (lcms would use those instead of the matrix), sRGB's colorants and
 * sRGB's tone curve on all three channels.
 */
export function isSrgbProfile(icc: Buffer | undefined): boolean {
  if (!icc || icc.length < 132) return false;
  if (icc.toString('latin1', 36, 40) !== 'acsp') return false;
  if (icc.toString('latin1', 16, 20) !== 'RGB ' || icc.toString('latin1', 20, 24) !== 'XYZ ') return false;
  const tags = tagTable(icc);
  if (!tags) return false;
  for (const name of tags.keys()) if (/^(A2B|B2A|D2B|B2D)/.test(name)) return false;
  for (const [name, expected] of Object.entries(SRGB_COLORANTS)) {
    if (!colorantMatches(icc, tags.get(name), expected)) return false;
  }
  return ['rTRC', 'gTRC', 'bTRC'].every((name) => curveIsSrgb(toneCurve(icc, tags.get(name))));
}
