// Top-k per query row: long sequences draw only each query's k strongest keys (a 512-token head view would
// otherwise be a grey wash of 3 M lines, and slow).

/** The k-th largest of row[base .. base+K) (0 when K < k: keep everything). */
export function kthLargest(row: ArrayLike<number>, base: number, K: number, k: number): number {
  if (k <= 0 || K <= k) return 0;
  // Small sorted buffer (descending); k is small (≤ 32), so insertion beats a full sort by far.
  const top = new Float32Array(k).fill(-Infinity);
  for (let j = 0; j < K; j++) {
    const w = row[base + j] as number;
    if (w <= (top[k - 1] as number)) continue;
    let p = k - 1;
    while (p > 0 && (top[p - 1] as number) < w) {
      top[p] = top[p - 1] as number;
      p--;
    }
    top[p] = w;
  }
  return top[k - 1] as number;
}

/** Sequences longer than this switch the line views to top-k lines per query by default. */
export const LONG_SEQUENCE = 192;
export const DEFAULT_TOPK = 8;

export function autoTopK(K: number): number {
  return K > LONG_SEQUENCE ? DEFAULT_TOPK : 0;
}
