// Token subsets: hide special tokens ([CLS], [SEP], BOS, padding, ...) with or without renormalising the rows,
// and the head view's sentence A/B filter. A subset is applied to the manifest, the attention and the q/k
// alike, so every view sees one consistent, smaller probe.

import type { Attention, Manifest, QK } from "./api";

/** Tokens that are markers rather than text. Conservative: only exact, well-known spellings. */
const SPECIAL = /^(\[(CLS|SEP|PAD|MASK|UNK|BOS|EOS)\]|<\/?s>|<(pad|unk|mask|bos|eos|cls|sep)>|<\|[^|\s]{1,40}\|>)$/i;

export function isSpecial(token: string): boolean {
  return SPECIAL.test(token.trim());
}

export interface Subset {
  /** Query / key positions kept, ascending; null keeps all. */
  q: number[] | null;
  k: number[] | null;
  /** Rescale each kept row to sum to 1 (what the model would attend to without the hidden keys). */
  renorm: boolean;
}

export type SpecialMode = "show" | "hide" | "renorm";

/** The subset hiding special tokens, or null when there is nothing to hide (or nothing would be left). */
export function specialSubset(m: Manifest, mode: SpecialMode): Subset | null {
  if (mode === "show") return null;
  const keep = (tokens: string[]): number[] | null => {
    const idx = tokens.flatMap((t, i) => (isSpecial(t) ? [] : [i]));
    return idx.length === tokens.length || idx.length === 0 ? null : idx;
  };
  const q = keep(m.tokens);
  const k = m.key_tokens ? keep(m.key_tokens) : q;
  return q || k ? { q, k, renorm: mode === "renorm" } : null;
}

const pick = <T>(xs: T[], idx: number[] | null): T[] => (idx ? idx.map((i) => xs[i] as T) : xs);

export function subsetManifest(m: Manifest, s: Subset | null): Manifest {
  if (!s) return m;
  const tokens = pick(m.tokens, s.q);
  // Self-attention whose query and key subsets differ (a query filter) is drawn like cross-attention.
  const keyTokens = m.key_tokens ? pick(m.key_tokens, s.k) : s.q === s.k ? null : pick(m.tokens, s.k);
  const out: Manifest = { ...m, tokens, key_tokens: keyTokens, query_len: tokens.length };
  out.key_len = keyTokens ? keyTokens.length : tokens.length;
  if (m.segments) out.segments = pick(m.segments, s.q);
  // Positions in the probe, for views that need them (the ViT image overlay's patch grid).
  const base = m.kept ?? { q: null, k: null };
  const compose = (outer: number[] | null, inner: number[] | null): number[] | null =>
    inner ? inner.map((i) => (outer ? (outer[i] as number) : i)) : outer;
  out.kept = { q: compose(base.q, s.q), k: compose(base.k, s.k) };
  return out;
}

export function subsetAttention(a: Attention, s: Subset | null): Attention {
  if (!s) return a;
  const qi = s.q ?? range(a.Q);
  const ki = s.k ?? range(a.K);
  const Q = qi.length;
  const K = ki.length;
  const out = new Float32Array(a.H * Q * K);
  for (let h = 0; h < a.H; h++) {
    for (let r = 0; r < Q; r++) {
      const src = (h * a.Q + (qi[r] as number)) * a.K;
      const dst = (h * Q + r) * K;
      let sum = 0;
      for (let c = 0; c < K; c++) sum += out[dst + c] = a.weights[src + (ki[c] as number)] as number;
      if (s.renorm && sum > 0) for (let c = 0; c < K; c++) out[dst + c] = (out[dst + c] as number) / sum;
    }
  }
  return { H: a.H, Q, K, weights: out };
}

export function subsetQK(x: QK, s: Subset | null): QK {
  if (!s) return x;
  const rows = (v: Float32Array, heads: number, n: number, idx: number[] | null): Float32Array => {
    if (!idx) return v;
    const out = new Float32Array(heads * idx.length * x.D);
    for (let h = 0; h < heads; h++) {
      idx.forEach((i, r) => out.set(v.subarray((h * n + i) * x.D, (h * n + i + 1) * x.D), (h * idx.length + r) * x.D));
    }
    return out;
  };
  return {
    ...x,
    Q: s.q ? s.q.length : x.Q,
    K: s.k ? s.k.length : x.K,
    queries: rows(x.queries, x.H, x.Q, s.q),
    keys: rows(x.keys, x.Hkv, x.K, s.k),
  };
}

/** Narrows the queries of `s` (or of everything) to the tokens containing `text`; null/unchanged when none do. */
export function queryFilter(m: Manifest, s: Subset | null, text: string): Subset | null {
  const needle = text.trim().toLowerCase();
  if (!needle) return s;
  const base = s?.q ?? range(m.tokens.length);
  const hits = base.filter((i) => (m.tokens[i] as string).toLowerCase().includes(needle));
  if (hits.length === 0 || hits.length === base.length) return s;
  return { q: hits, k: s ? s.k : null, renorm: s?.renorm ?? false };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
