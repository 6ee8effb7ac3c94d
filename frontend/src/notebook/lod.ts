// Level of detail for long probes (tb_attention/notebook/payload.py decides, docs/notebook.md says what is lost):
// an attention layer stored as each query's top k keys (their cbrt8 codes and key indices) is expanded here into
// the dense cbrt8 container the attention route serves, with the dropped keys at weight 0. The head view draws
// each query's top 8 keys beyond 192 tokens anyway, so k ≥ 8 leaves its picture unchanged. Past 512 tokens a
// layer may instead be the `topk` route's answer itself (notebook/lod_parts.py), whose codes are absolute.

import { decodeContainer } from "../data/container";

const pad8 = (n: number): number => (8 - (n % 8)) % 8;

/** Packs arrays (little-endian bytes of `dtype`) into a TBA1 container (docs/format.md); the browser checks no CRC. */
function packRaw(
  arrays: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>,
  meta: object,
): Uint8Array<ArrayBuffer> {
  const specs: Record<string, { dtype: string; shape: number[]; offset: number }> = {};
  let offset = 0;
  for (const [name, a] of Object.entries(arrays)) {
    specs[name] = { dtype: a.dtype, shape: a.shape, offset };
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

/** Packs uint8 arrays into a TBA1 container. */
export function packUint8(
  arrays: Record<string, { shape: number[]; data: Uint8Array }>,
  meta: object,
): Uint8Array<ArrayBuffer> {
  const raw: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const [name, a] of Object.entries(arrays)) raw[name] = { dtype: "uint8", ...a };
  return packRaw(raw, meta);
}

const ITEM: Record<string, number> = { uint8: 1, float16: 2, float32: 4, float64: 8, int32: 4 };

/**
 * What `qk?head=h` answers (docs/http_api.md), cut from an embedded whole-layer `qk` answer: queries [1, Q, D] of
 * head h, keys [1, K, D] of its key head h // (H / H_kv), meta.head and meta.kv_head; null when h is out of range.
 */
export function qkHeadOf(stored: Uint8Array, head: number): Uint8Array<ArrayBuffer> | null {
  const n = new DataView(stored.buffer, stored.byteOffset, stored.byteLength).getUint32(4, true);
  type Spec = { dtype: string; shape: number[]; offset: number };
  const header = JSON.parse(new TextDecoder().decode(stored.subarray(8, 8 + n))) as {
    meta: Record<string, unknown>;
    arrays: Record<string, Spec>;
  };
  const { queries: q, keys: k } = header.arrays;
  if (!q || !k || q.shape.length !== 3 || k.shape.length !== 3) throw new Error("qk: unexpected payload");
  const [H, Q, D] = q.shape as [number, number, number];
  const [Hkv, K] = k.shape as [number, number, number];
  if (!Number.isInteger(head) || head < 0 || head >= H || !Hkv || H % Hkv) return null;
  const kv = Math.floor(head / (H / Hkv));
  const cut = (a: Spec, i: number, rows: number): Uint8Array => {
    const size = rows * D * (ITEM[a.dtype] ?? 1);
    const at = 8 + n + a.offset + i * size;
    return stored.subarray(at, at + size);
  };
  return packRaw(
    {
      queries: { dtype: q.dtype, shape: [1, Q, D], data: cut(q, head, Q) },
      keys: { dtype: k.dtype, shape: [1, K, D], data: cut(k, kv, K) },
    },
    { ...header.meta, head, kv_head: kv },
  );
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

/**
 * A `topk` answer (keys int32 [H, Q, k], codes uint8 [H, Q, k], w = (code/255)³ absolute; docs/http_api.md) →
 * the dense cbrt8 container of `K` keys a row, the others 0: row_exp 0 makes every row's scale 1, so the codes
 * keep their absolute meaning.
 */
export function expandTopKAnswer(stored: Uint8Array, K: number): Uint8Array<ArrayBuffer> {
  const buf = stored.buffer.slice(stored.byteOffset, stored.byteOffset + stored.byteLength) as ArrayBuffer;
  const c = decodeContainer(buf);
  const keys = c.arrays["keys"];
  const codes = c.arrays["codes"];
  if (!keys || !codes || keys.shape.length !== 3 || codes.data.length !== keys.data.length) {
    throw new Error("attention: unexpected top-k payload");
  }
  const [H, Q, k] = keys.shape as [number, number, number];
  if (!Number.isInteger(K) || K < k) throw new Error(`attention: bad key length ${K} for top ${k}`);
  const dense = new Uint8Array(H * Q * K);
  const idx = keys.data as Int32Array;
  const val = codes.data as Uint8Array;
  for (let r = 0; r < H * Q; r++) {
    for (let j = r * k; j < (r + 1) * k; j++) {
      const key = idx[j] as number;
      const code = val[j] as number;
      // Code 0 pads a row with fewer than k allowed keys: never over a key it does hold.
      if (code > 0 && key >= 0 && key < K) dense[r * K + key] = code;
    }
  }
  return packUint8(
    { codes: { shape: [H, Q, K], data: dense }, row_exp: { shape: [H, Q], data: new Uint8Array(H * Q) } },
    { encoding: "cbrt8", lod: `top ${k} of ${K} keys per query` },
  );
}
