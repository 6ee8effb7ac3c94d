"""The writer's one pass over a q/k-only head (docs/format.md, "Storage per layer"): the per-row normalisers
(lse), the max-pooled overview and each query's top-k, rebuilt from q/k in bounded blocks of rows
(`recompute.row_blocks`), with each block also handed to a callback (the per-head metrics, head_metrics.py).

Constraints:
- Faithful: the operations of `recompute.logits` and `recompute.softmax_rows`, fused, in the same order.
- Fast: a 32-layer x 32-head step is 1,024 heads, so 0.12-0.16 s of CPU per 4,096-token causal head on one core
  (docs/scale.md; it was 0.8 s with the metrics' own pass). Each block lives in two buffers reused from block to
  block, each elementwise pass reads it once, masks touch only the keys some row of the block may not see, and
  keys no row of a block sees (`recompute.seen_keys`) are never computed.
"""

import dataclasses

import numpy as np

from tb_attention.analysis.embedding import one_blas_thread
from tb_attention.analysis.recompute import (
    OVERVIEW,
    Spec,
    _bind,
    _sink,
    allowed,
    pool_edges,
    row_blocks,
    seen_keys,
    top_k,
)


@dataclasses.dataclass
class HeadSummary:
    lse: np.ndarray  # float32 [Q]
    overview: np.ndarray  # float32 [Sq, Sk], max-pooled weights
    topk_keys: np.ndarray  # int64 [Q, k]
    topk_weights: np.ndarray  # float32 [Q, k]


@dataclasses.dataclass
class Block:
    """What `summarise_head`'s pass holds for rows [start, stop) when it calls ``on_block``: the weights of keys
    [lo, hi) (every other key weighs 0), each row's entropy and key mass, and its top-k. The arrays are the pass's
    scratch: read them during the call, never keep them."""

    start: int
    stop: int
    lo: int
    hi: int
    weights: np.ndarray  # float32 [rows, hi - lo]
    entropy: np.ndarray  # float32 [rows]: -sum w ln w over the keys, nats (0 for a row with nothing to attend)
    mass: np.ndarray  # float32 [rows]: sum of w over the keys (1 less what a sink takes; 0: nothing to attend)
    top_keys: np.ndarray  # int64 [rows, k], k = the summary's top-k (may be 0)
    top_weights: np.ndarray  # float32 [rows, k]


def summarise_head(spec: Spec, q, k, head: int, topk: int, size: int = OVERVIEW, on_block=None) -> HeadSummary:
    """One pass over a head's rows in bounded blocks: normalisers, max-pooled overview and each query's top-k.
    ``on_block(Block)``, when given, sees every block (the writer's per-head metrics share the pass)."""
    query_len, key_len = q.shape[0], k.shape[0]
    spec = _bind(spec, query_len, key_len)
    row_edges, col_edges = pool_edges(query_len, size), pool_edges(key_len, size)
    row_cell = np.repeat(np.arange(len(row_edges) - 1), np.diff(row_edges))
    overview = np.zeros((len(row_edges) - 1, len(col_edges) - 1), np.float32)
    lse = np.empty(query_len, np.float32)
    kk = min(topk, key_len)
    top_keys = np.zeros((query_len, kk), np.int64)
    top_w = np.zeros((query_len, kk), np.float32)
    qs = q.astype(np.float32) * np.float32(spec.scaling)  # logits()'s scaled queries, once per head
    ks = k.astype(np.float32, copy=False)
    sink = _sink(spec, head)
    blocks = list(row_blocks(query_len, key_len))
    # Two flat buffers reused by every block (logits, weights), each viewed as a contiguous [rows, keys seen].
    scratch = np.empty((2, max((b - a) * key_len for a, b in blocks) if blocks else 0), np.float32)
    # One BLAS thread (numpy's OpenBLAS, process-wide while a head is summarised; torch's own pool is untouched):
    # the writer's thread runs next to the training loop, and on the 2-core machine a second BLAS thread made a
    # 4,096-token head slower, not faster (0.27 s of CPU and 0.3-0.45 s wall against 0.12-0.15 s and 0.2-0.23 s:
    # OpenBLAS's threads spin while they wait). It also makes the result independent of the caller's thread count.
    with one_blas_thread():
        for start, stop in blocks:
            lo, hi = seen_keys(spec, start, stop, key_len)
            x, w = (buf[: (stop - start) * (hi - lo)].reshape(stop - start, hi - lo) for buf in scratch)
            found = _block_weights(spec, qs[start:stop], ks[lo:hi], head, start, lo, query_len, sink, x, w)
            lse[start:stop], entropy, mass = found
            _pool(overview, w, lo, col_edges, row_cell[start:stop])
            if kk:
                top_keys[start:stop], top_w[start:stop] = _block_top_k(w, lo, key_len, kk)
            if on_block is not None:
                on_block(Block(start, stop, lo, hi, w, entropy, mass, top_keys[start:stop], top_w[start:stop]))
    return HeadSummary(lse, overview, top_keys, top_w)


def _block_weights(spec: Spec, qs, ks, head, start, lo, query_len, sink, x: np.ndarray, w: np.ndarray):
    """The weights of rows start.. (scaled queries ``qs``) on keys lo.. (``ks``) into ``w``: recompute.logits and
    softmax_rows fused, each elementwise pass reading the block once, ``x`` holding the logits and then s = logit −
    row max. -> (lse, entropy, mass) per row. Entropy needs no log of weights: with e = exp(s), total = Σe (+ the
    sink's term) and w = e / total, −Σ w ln w = (ln(total)·Σe − Σ e·s) / total."""
    np.matmul(qs, ks.T, out=x)
    if spec.softcap is not None:
        cap = np.float32(spec.softcap)
        np.divide(x, cap, out=x)
        np.tanh(x, out=x)
        np.multiply(x, cap, out=x)
    if spec.bias is not None:
        # bias[h, j - i + Q - 1] for a block of consecutive rows and keys: row i reads a slice of the table,
        # one further left per row (a strided view, no gather).
        first = lo - start + query_len - 1
        windows = np.lib.stride_tricks.sliding_window_view(spec.bias[head], x.shape[1])
        x += windows[first - x.shape[0] + 1 : first + 1][::-1]
    hidden = _hidden(spec, start, lo, x.shape)
    for a, b, hide in hidden:
        np.copyto(x[:, a:b], -np.inf, where=hide)
    top = x.max(axis=1) if x.shape[1] else np.full(x.shape[0], -np.inf, np.float32)
    if sink is not None:
        top = np.maximum(top, sink)
    safe = np.where(np.isfinite(top), top, 0).astype(np.float32)
    np.subtract(x, safe[:, None], out=x)
    np.exp(x, out=w)
    for a, b, hide in hidden:
        np.copyto(x[:, a:b], 0, where=hide)  # masked: e = 0, and 0 · (−inf) would make Σ e·s NaN
    keys = w.sum(axis=1, dtype=np.float32)
    total = keys + np.exp(sink - safe) if sink is not None else keys
    alive = total > 0
    inv = np.where(alive, 1.0 / np.where(alive, total, 1.0), 0.0).astype(np.float32)
    tilted = np.vecdot(w, x)  # Σ e·s ≤ 0
    w *= inv[:, None]
    log_total = np.log(np.where(alive, total, 1.0))
    lse = np.where(alive, safe + log_total, -np.inf).astype(np.float32)
    return lse, inv * (log_total * keys - tilted), keys * inv


def _hidden(spec: Spec, start: int, lo: int, shape) -> list:
    """[(a, b, hide)]: the column ranges of a block (rows start.., keys lo..) where some row is masked, hide =
    ~allowed there. Every mask kind allows each row an interval of keys whose ends never decrease down the rows,
    so a key allowed in the block's first and last rows is allowed in all of them and needs no mask."""
    n, width = shape
    cols = np.arange(lo, lo + width)
    ends = allowed(spec, np.array([start, start + n - 1]), cols)
    if ends is None or not width:  # mask "none", or no keys
        return []
    everyone = np.flatnonzero(ends[0] & ends[1])
    ranges = [(0, everyone[0]), (everyone[-1] + 1, width)] if everyone.size else [(0, width)]
    rows, hidden = np.arange(start, start + n), []
    for a, b in ranges:
        keep = allowed(spec, rows, cols[a:b])
        if b > a and keep is not None:
            hidden.append((a, b, ~keep))
    return hidden


def _pool(overview: np.ndarray, w: np.ndarray, lo: int, col_edges: np.ndarray, cells: np.ndarray) -> None:
    """Max-pools a block's weights (keys lo..) into the overview rows ``cells`` of its rows: over each cell's rows
    first (contiguous rows; numpy's reduceat along rows is slow), then over the cells' keys."""
    if not w.size:
        return
    firsts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    sizes = np.diff(np.r_[firsts, len(cells)])
    if (sizes == sizes[0]).all():
        by_rows = w.reshape(len(firsts), sizes[0], w.shape[1]).max(axis=1)
    else:
        by_rows = np.stack([w[a : a + m].max(axis=0) for a, m in zip(firsts, sizes)])
    hi = lo + w.shape[1]
    c0, c1 = np.searchsorted(col_edges, lo, "right") - 1, np.searchsorted(col_edges, hi, "left")
    pooled = np.maximum.reduceat(by_rows, np.maximum(col_edges[c0:c1], lo) - lo, axis=1)
    ids = cells[firsts]
    overview[ids, c0:c1] = np.maximum(overview[ids, c0:c1], pooled)


def _block_top_k(w: np.ndarray, lo: int, key_len: int, k: int):
    """top_k of a block's rows over all ``key_len`` keys, of which only lo.. are in ``w`` (the rest weigh 0)."""
    n, width = w.shape
    if width >= k:
        keys, vals = top_k(w, k)
        keys += lo
        # A zero among the top: its ties go to the lowest keys, which may lie below lo.
        redo = np.flatnonzero(vals[:, -1] == 0) if lo else np.zeros(0, np.int64)
    else:
        keys, vals, redo = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32), np.arange(n)
    if redo.size:
        full = np.zeros((redo.size, key_len), np.float32)
        full[:, lo : lo + width] = w[redo]
        keys[redo], vals[redo] = top_k(full, k)
    return keys, vals
