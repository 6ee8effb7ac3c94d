// Minimal .npz writer (a stored zip of .npy files, NumPy format 1.0) for exporting the raw arrays of a step:
// `np.load("x.npz")` reads it with no pickle. Strings are fixed-width UTF-32 ('<U<n>'), as NumPy stores str.

export type NpyArray =
  | { dtype: "<f4"; shape: number[]; data: Float32Array }
  | { dtype: "<i8"; shape: number[]; data: number[] }
  | { dtype: "<U"; shape: number[]; data: string[] };

function npy(a: NpyArray): Uint8Array {
  let descr: string = a.dtype;
  let body: Uint8Array;
  if (a.dtype === "<f4") {
    body = new Uint8Array(a.data.buffer.slice(a.data.byteOffset, a.data.byteOffset + a.data.byteLength));
  } else if (a.dtype === "<i8") {
    const v = new DataView(new ArrayBuffer(a.data.length * 8));
    a.data.forEach((x, i) => v.setBigInt64(i * 8, BigInt(Math.trunc(x)), true));
    body = new Uint8Array(v.buffer);
  } else {
    const cps = a.data.map((s) => Array.from(s, (c) => c.codePointAt(0) as number));
    const n = Math.max(1, ...cps.map((c) => c.length));
    descr = `<U${n}`;
    const v = new DataView(new ArrayBuffer(cps.length * n * 4));
    cps.forEach((c, i) => c.forEach((cp, j) => v.setUint32((i * n + j) * 4, cp, true)));
    body = new Uint8Array(v.buffer);
  }
  const shape = a.shape.length === 1 ? `(${a.shape[0]},)` : `(${a.shape.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0); // \x93NUMPY v1.0
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(body, 10 + header.length);
  return out;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = (CRC_TABLE[(c ^ (b[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A stored (uncompressed) zip of `<name>.npy` members. Under 4 GiB in total (no zip64). */
function writeNpz(arrays: Record<string, NpyArray>): Uint8Array<ArrayBuffer> {
  const files = Object.entries(arrays).map(([name, a]) => ({
    name: new TextEncoder().encode(`${name}.npy`),
    data: npy(a),
  }));
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const f of files) {
    const crc = crc32(f.data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, f.data.length, true);
    local.setUint32(22, f.data.length, true);
    local.setUint16(26, f.name.length, true);
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(4, 20, true);
    cd.setUint16(6, 20, true);
    cd.setUint32(16, crc, true);
    cd.setUint32(20, f.data.length, true);
    cd.setUint32(24, f.data.length, true);
    cd.setUint16(28, f.name.length, true);
    cd.setUint32(42, offset, true);
    chunks.push(new Uint8Array(local.buffer), f.name, f.data);
    central.push(new Uint8Array(cd.buffer), f.name);
    offset += 30 + f.name.length + f.data.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, offset, true);
  const parts = [...chunks, ...central, new Uint8Array(end.buffer)];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function npzBlob(arrays: Record<string, NpyArray>): Blob {
  return new Blob([writeNpz(arrays)], { type: "application/zip" });
}
