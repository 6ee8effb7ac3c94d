// Level of detail for long probes (tb_attention/notebook/budget.py decides, docs/notebook.md says what is lost):
// an attention layer stored as each query's top k keys (their cbrt8 codes and key indices) is expanded here into
// the dense cbrt8 container the attention route serves, with the dropped keys at weight 0. The head view draws
// each query's top 8 keys beyond 192 tokens anyway, so k ≥ 8 leaves its picture unchanged.

import { decodeContainer } from "../data/container";

const pad8 = (n: number): number => (8 - (n % 8)) % 8;

/** Packs uint8 arrays into a TBA1 container (docs/format.md); the browser's decoder checks no CRC. */
export function packUint8(
  arrays: Record<string, { shape: number[]; data: Uint8Array }>,
  meta: object,
): Uint8Array<ArrayBuffer> {
  const specs: Record<string, { dtype: string; shape: number[]; offset: number }> = {};
  let offset = 0;
  for (const [name, a] of Object.entries(arrays)) {
    specs[name] = { dtype: "uint8", shape: a.shape, offset };
    offset += a.data.length + pad8(a.data.length);
  }
  let head = JSON.stringify({ meta, arrays: specs });
  head += " ".repeat(pad8(head.length));
  const headBytes = new TextEncoder().encode(head); // ASCII: one byte per character, so the padding holds
  const out = new Uint8Array(8 + headBytes.length + offset);
  out.set([0x54, 0x42, 0x41, 0x31]); // "TBA1"
  new DataView(out.buffer).setUint32(4, headBytes.length, true);
  out.set(headBytes, 8);
  let at = 8 + headBytes.length;
  for (const a of Object.values(arrays)) {
    out.set(a.data, at);
    at += a.data.length + pad8(a.data.length);
  }
  return out;
}

/** A "cbrt8-topk" container (index int32 [H, Q, k], codes uint8 [H, Q, k], row_exp [H, Q]) → dense cbrt8. */
export function expandTopK(stored: Uint8Array): Uint8Array<ArrayBuffer> {
  const buf = stored.buffer.slice(stored.byteOffset, stored.byteOffset + stored.byteLength) as ArrayBuffer;
  const c = decodeContainer(buf);
  const index = c.arrays["index"];
  const codes = c.arrays["codes"];
  const rowExp = c.arrays["row_exp"];
  const K = Number(c.meta["key_len"]);
  if (c.meta["encoding"] !== "cbrt8-topk" || !index || !codes || !rowExp || index.shape.length !== 3) {
    throw new Error("attention: unexpected level-of-detail payload");
  }
  const [H, Q, k] = index.shape as [number, number, number];
  if (!Number.isInteger(K) || K < k) throw new Error(`attention: bad key length ${K} for top ${k}`);
  const dense = new Uint8Array(H * Q * K);
  const idx = index.data as Int32Array;
  const val = codes.data as Uint8Array;
  for (let r = 0; r < H * Q; r++) {
    const base = r * K;
    for (let j = r * k; j < (r + 1) * k; j++) {
      const key = idx[j] as number;
      if (key >= 0 && key < K) dense[base + key] = val[j] as number;
    }
  }
  return packUint8(
    { codes: { shape: [H, Q, K], data: dense }, row_exp: { shape: [H, Q], data: rowExp.data as Uint8Array } },
    { encoding: "cbrt8", lod: `top ${k} of ${K} keys per query` },
  );
}
