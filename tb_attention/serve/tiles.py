"""Levels of detail of one head, computed from a `layers` source one bounded block at a time (docs/http_api.md:
`tile`, `lod`, `topk`, and one head of a "qk" layer).

Every function here holds at most `BLOCK` float32 weights of a head at once (plus the small pooled result), so a
32,768-token head, whose weights are 4 GiB of float32, is streamed in 16 MiB pieces; a tile costs only its own rows
and columns (a "qk" layer's weights come from the stored per-row normalisers, analysis/recompute.py).
"""

import math

import numpy as np

from tb_attention.analysis import recompute
from tb_attention.format import codec

BLOCK = 1 << 22  # float32 weights per block (16 MiB): logits, mask and weights of a block stay under ~64 MiB
TOPK = 8  # keys per query when the top-k is computed by the server (the writer stores k = 4)


def _cells(start, stop, cell):
    """Offsets from `start` of the cells of side `cell` covering [start, stop)."""
    return np.arange(0, stop - start, cell)


def pool(source, head, r0, r1, c0, c1, cell):
    """float32 [⌈(r1−r0)/cell⌉, ⌈(c1−c0)/cell⌉]: the largest weight of each cell × cell block of a rectangle,
    in blocks of rows and columns aligned to the cells (so no cell straddles two blocks)."""
    out = np.zeros((-(-(r1 - r0) // cell), -(-(c1 - c0) // cell)), np.float32)
    # Square blocks where the cells allow: a causal or sliding mask then hides whole blocks, which cost nothing.
    side = max(cell, math.isqrt(BLOCK) // cell * cell)
    width = min(-(-(c1 - c0) // cell) * cell, side)
    height = max(cell, BLOCK // width // cell * cell)
    for a in range(r0, r1, height):
        b = min(r1, a + height)
        for c in range(c0, c1, width):
            d = min(c1, c + width)
            if getattr(source, "hidden", None) and source.hidden(a, b, c, d):
                continue  # masked: zeros already
            part = source.col_pooled(head, a, b, c, d, _cells(c, d, cell))
            part = np.maximum.reduceat(part, _cells(a, b, cell), axis=0) if cell > 1 else part
            i, j = (a - r0) // cell, (c - c0) // cell
            out[i : i + part.shape[0], j : j + part.shape[1]] = part
    return out


def _overview_cells(length, start, stop, cell):
    """The stored overview's cells that are exactly the tile's cells along one axis, or None."""
    edges = recompute.pool_edges(length, recompute.OVERVIEW)
    need = np.append(np.arange(start, stop, cell), stop)
    i = int(np.searchsorted(edges, start))
    if i + len(need) > len(edges) or not np.array_equal(edges[i : i + len(need)], need):
        return None
    return slice(i, i + len(need) - 1)


def tile(source, head, level, row, col):
    """(codes uint8 [h, w], source name) of one tile, or None when the tile is outside the head."""
    rows = recompute.tile_range(row, level, source.query_len)
    cols = recompute.tile_range(col, level, source.key_len)
    if not len(rows) or not len(cols):
        return None
    r0, r1, c0, c1, cell = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1, 1 << level
    if source.kind == "qk":
        # The writer's overview is this tile when its cells are the tile's (e.g. the coarsest level of a head of
        # 256·2^z tokens, or any tile of a head of ≤ 256 tokens): no arithmetic at all.
        sr = _overview_cells(source.query_len, r0, r1, cell)
        sc = _overview_cells(source.key_len, c0, c1, cell)
        if sr is not None and sc is not None:
            return np.ascontiguousarray(source.overview[head, sr, sc]), "overview"
    codes = recompute.cbrt_codes(pool(source, head, r0, r1, c0, c1, cell))
    return codes, "weights" if source.kind == "weights" else "recomputed"


def _span(edges, start, stop):
    """Cells [i, j) of `edges` (cell boundaries) that intersect [start, stop)."""
    return int(np.searchsorted(edges, start, "right")) - 1, int(np.searchsorted(edges, stop, "left"))


def lod(source, size):
    """(thumbs uint8 [H, Sq, Sk], exact): every head max-pooled to min(Q, size) × min(K, size) cells of edges
    ⌊a·Q/S⌋ (format.md). From a "qk" layer's overview (each cell the largest overview cell it intersects: exact when
    the cells' edges are overview edges, e.g. when `size` divides 256 or Q, K ≤ 256), else from the stored weights."""
    q_len, k_len = source.query_len, source.key_len
    row_edges, col_edges = recompute.pool_edges(q_len, size), recompute.pool_edges(k_len, size)
    if source.kind == "qk":
        ov_rows = recompute.pool_edges(q_len, recompute.OVERVIEW)
        ov_cols = recompute.pool_edges(k_len, recompute.OVERVIEW)
        exact = bool(np.isin(row_edges, ov_rows).all() and np.isin(col_edges, ov_cols).all())
        rows = [_span(ov_rows, a, b) for a, b in zip(row_edges[:-1], row_edges[1:])]
        cols = [_span(ov_cols, a, b) for a, b in zip(col_edges[:-1], col_edges[1:])]
        by_row = np.stack([source.overview[:, i:j].max(axis=1) for i, j in rows], axis=1)
        return np.stack([by_row[:, :, i:j].max(axis=2) for i, j in cols], axis=2), exact
    out = np.zeros((source.num_heads, len(row_edges) - 1, len(col_edges) - 1), np.float32)
    row_cell = np.repeat(np.arange(len(row_edges) - 1), np.diff(row_edges))
    step = max(1, BLOCK // k_len)
    for head in range(source.num_heads):
        for a in range(0, q_len, step):
            b = min(q_len, a + step)
            part = source.col_pooled(head, a, b, 0, k_len, col_edges[:-1])
            lo, hi = row_cell[a], row_cell[b - 1] + 1  # the cells these rows fall in, the first maybe partial
            starts = np.maximum(row_edges[lo:hi], a) - a
            out[head, lo:hi] = np.maximum(out[head, lo:hi], np.maximum.reduceat(part, starts, axis=0))
    return recompute.cbrt_codes(out), True


def top_k(source, heads, k=TOPK):
    """(keys int32 [len(heads), Q, k], codes uint8 [len(heads), Q, k]) computed from the weights, in row blocks."""
    k = min(k, source.key_len)
    keys = np.zeros((len(heads), source.query_len, k), np.int32)
    codes = np.zeros((len(heads), source.query_len, k), np.uint8)
    step = max(1, BLOCK // source.key_len)
    for n, head in enumerate(heads):
        for a in range(0, source.query_len, step):
            b = min(source.query_len, a + step)
            idx, w = source.top_k(head, a, b, k)
            keys[n, a:b], codes[n, a:b] = idx, recompute.cbrt_codes(w)
    return keys, codes


def head_cbrt8(source, head):
    """(codes uint8 [Q, K], row_exp uint8 [Q]) of one head rebuilt in row blocks: the attention route's encoding."""
    codes = np.empty((source.query_len, source.key_len), np.uint8)
    row_exp = np.empty(source.query_len, np.uint8)
    step = max(1, BLOCK // source.key_len)
    for a in range(0, source.query_len, step):
        b = min(source.query_len, a + step)
        codes[a:b], row_exp[a:b] = codec.encode_cbrt8(source.block(head, a, b, 0, source.key_len))
    return codes, row_exp
