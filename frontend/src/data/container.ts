// Decoder for the "TBA1" array container (docs/format.md) and the cbrt8 attention codec.

export type DType = "uint8" | "float16" | "float32" | "float64" | "int32";
export type NumArray = Uint8Array | Float32Array | Float64Array | Int32Array;

export interface DecodedArray {
  dtype: DType;
  shape: number[];
  /** float16 bodies are widened to Float32Array: JS has no portable float16 typed array. */
  data: NumArray;
}

export interface Container {
  meta: Record<string, unknown>;
  arrays: Record<string, DecodedArray>;
}

const ITEM_SIZE: Record<DType, number> = { uint8: 1, float16: 2, float32: 4, float64: 8, int32: 4 };

// Typed arrays use host byte order; the format is little-endian. Every browser we target is LE,
// but fall back to DataView reads rather than silently misreading on a BE host.
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(msg: string): never {
  throw new Error(`invalid TBA1 container: ${msg}`);
}

/** IEEE 754 binary16 bits → number (handles subnormals, inf, NaN). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function readBody(buf: ArrayBuffer, start: number, dtype: DType, count: number): NumArray {
  const aligned = start % ITEM_SIZE[dtype] === 0;
  if (dtype === "uint8") return new Uint8Array(buf, start, count);
  if (dtype === "float16") {
    const out = new Float32Array(count);
    const dv = new DataView(buf, start, count * 2);
    for (let i = 0; i < count; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
    return out;
  }
  if (HOST_LE && aligned) {
    if (dtype === "float32") return new Float32Array(buf, start, count);
    if (dtype === "float64") return new Float64Array(buf, start, count);
    return new Int32Array(buf, start, count);
  }
  const dv = new DataView(buf, start, count * ITEM_SIZE[dtype]);
  if (dtype === "float32") return Float32Array.from({ length: count }, (_, i) => dv.getFloat32(i * 4, true));
  if (dtype === "float64") return Float64Array.from({ length: count }, (_, i) => dv.getFloat64(i * 8, true));
  return Int32Array.from({ length: count }, (_, i) => dv.getInt32(i * 4, true));
}

/** Parses a TBA1 container; arrays are zero-copy views into `buf` where the dtype allows. */
export function decodeContainer(buf: ArrayBuffer): Container {
  if (buf.byteLength < 8) fail(`${buf.byteLength} bytes is shorter than the 8-byte preamble`);
  const magic = String.fromCharCode(...new Uint8Array(buf, 0, 4));
  if (magic !== "TBA1") {
    fail(
      magic === "TBAZ"
        ? "got a compressed TBAZ blob (the server should inflate it)"
        : `bad magic ${JSON.stringify(magic)}`,
    );
  }
  const headerLen = new DataView(buf).getUint32(4, true);
  const bodyStart = 8 + headerLen;
  if (bodyStart > buf.byteLength) fail(`header length ${headerLen} runs past the end (${buf.byteLength} bytes)`);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, headerLen)));
  } catch (e) {
    fail(`header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null) fail("header is not an object");
  const { meta = {}, arrays = {} } = header as { meta?: Record<string, unknown>; arrays?: Record<string, unknown> };

  const out: Container = { meta, arrays: {} };
  for (const [name, spec] of Object.entries(arrays)) {
    const { dtype, shape, offset } = spec as { dtype: DType; shape: number[]; offset: number };
    if (!(dtype in ITEM_SIZE)) fail(`array ${name}: unsupported dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`array ${name}: bad shape`);
    if (!Number.isInteger(offset) || offset < 0) fail(`array ${name}: bad offset`);
    const count = shape.reduce((a, b) => a * b, 1);
    const start = bodyStart + offset;
    const end = start + count * ITEM_SIZE[dtype];
    if (end > buf.byteLength) fail(`array ${name} is truncated (needs bytes ${start}..${end}, have ${buf.byteLength})`);
    out.arrays[name] = { dtype, shape, data: readBody(buf, start, dtype, count) };
  }
  return out;
}

// (code/255)^3 for every code, and 2^(-e/8) for every row exponent: decoding is then two lookups and a multiply.
const CUBE_LUT = Float32Array.from({ length: 256 }, (_, c) => (c / 255) ** 3);
const SCALE_LUT = Float32Array.from({ length: 256 }, (_, e) => 2 ** (-e / 8));

/** cbrt8 → weights: w = 2^(-row_exp/8) · (code/255)^3, laid out [H, Q, K] like `codes`. */
export function decodeCbrt8(codes: Uint8Array, rowExp: Uint8Array, H: number, Q: number, K: number): Float32Array {
  if (codes.length !== H * Q * K) throw new Error(`cbrt8: codes has ${codes.length} entries, expected ${H}×${Q}×${K}`);
  if (rowExp.length !== H * Q) throw new Error(`cbrt8: row_exp has ${rowExp.length} entries, expected ${H}×${Q}`);
  const out = new Float32Array(codes.length);
  for (let r = 0, base = 0; r < H * Q; r++, base += K) {
    const s = SCALE_LUT[rowExp[r]];
    for (let k = 0; k < K; k++) out[base + k] = s * CUBE_LUT[codes[base + k]];
  }
  return out;
}
