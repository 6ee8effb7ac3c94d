"""Levels of detail of one head, whatever its layer stores, computed one bounded block at a time: the answers of the
`lod`, `topk` and `tile` routes (docs/http_api.md). The server (serve/lod_routes.py) and notebook outputs, which
embed these answers when they are built (notebook/lod_parts.py), both call `*_answer` here and pack the result with
format/codec.py, so the two give the same bytes.

A source is one layer's weights by rectangle: decoded cbrt8 codes (`Weights`), or q/k plus the `recompute` container
(`Recompute`, a "qk" layer). Every function here holds at most `BLOCK` float32 weights of a head at once (plus the
small pooled result), so a 32,768-token head, whose weights are 4 GiB of float32, is streamed in 16 MiB pieces; a
tile costs only its own rows and columns (a "qk" layer's weights come from the stored per-row normalisers,
analysis/recompute.py).
"""

import math

import numpy as np

from tb_attention.analysis import recompute

_LUT = ((np.arange(256, dtype=np.float64) / 255.0) ** 3).astype(np.float32)  # cbrt8 codes -> (code/255)^3


class Weights:
    """A layer stored as cbrt8 codes [H, Q, K] and row exponents [H, Q]."""

    kind = "weights"

    def __init__(self, codes, row_exp):
        self.codes, self.row_exp = codes, row_exp
        self.num_heads, self.query_len, self.key_len = codes.shape
        self.nbytes = codes.nbytes + row_exp.nbytes

    def scale(self, head, r0, r1):
        return np.exp2(-self.row_exp[head, r0:r1].astype(np.float32) / 8.0)

    def block(self, head, r0, r1, c0, c1):
        """float32 [r1 - r0, c1 - c0]: the stored weights of a rectangle."""
        return _LUT[self.codes[head, r0:r1, c0:c1]] * self.scale(head, r0, r1)[:, None]

    def rows(self, head, rows):
        """float32 [len(rows), K]: whole rows."""
        rows = np.asarray(rows)
        return _LUT[self.codes[head, rows]] * np.exp2(-self.row_exp[head, rows].astype(np.float32) / 8.0)[:, None]

    def col_pooled(self, head, r0, r1, c0, c1, starts):
        """float32 [r1 - r0, len(starts)]: each row's largest weight over columns [starts[i], starts[i + 1]) of
        [c0, c1) (offsets from c0). Within a row the decoded weight grows with the code (one scale per row), so the
        codes are pooled first and only the pooled cells are decoded."""
        codes = np.maximum.reduceat(self.codes[head, r0:r1, c0:c1], starts, axis=1)
        return _LUT[codes] * self.scale(head, r0, r1)[:, None]

    def top_k(self, head, r0, r1, k):
        """(keys, weights) of each row's k largest weights, ranked by code (the same order as the weights)."""
        idx, _ = recompute.top_k(self.codes[head, r0:r1].astype(np.float32), k)
        return idx, _LUT[np.take_along_axis(self.codes[head, r0:r1], idx, axis=1)] * self.scale(head, r0, r1)[:, None]


class Recompute:
    """A "qk" layer: fp16 q [H, Q, D], k [H_kv, K, D], the per-row normalisers, overview, top-k and bias table."""

    kind = "qk"

    def __init__(self, spec, queries, keys, arrays, meta, key_len=None):
        """`queries`/`keys` are arrays, or both one callable returning (queries, keys) when first needed (with
        `key_len` given): thumbnails and stored top-k need only the small container, not the layer's q/k (42 MB at
        4,096 tokens), which a reader may then keep in its own bounded cache."""
        self.spec, self.meta = spec, meta
        self._qk = queries if callable(queries) else (lambda: (queries, keys))
        self.lse, self.overview = arrays["lse"], arrays["overview"]
        self.topk_keys, self.topk_codes = arrays.get("topk_keys"), arrays.get("topk_codes")
        self.bias = arrays.get("bias")
        self.num_heads, self.query_len = self.lse.shape
        self.key_len = key_len if callable(queries) else keys.shape[1]
        held = 0 if callable(queries) else queries.nbytes + keys.nbytes
        self.nbytes = held + sum(a.nbytes for a in arrays.values())

    @property
    def queries(self):
        return self._qk()[0]

    @property
    def keys(self):
        return self._qk()[1]

    def kv_head(self, head):
        return head // self.spec.group

    def block(self, head, r0, r1, c0, c1):
        if self.hidden(r0, r1, c0, c1):
            return np.zeros((r1 - r0, c1 - c0), np.float32)
        q, k = self.queries[head], self.keys[self.kv_head(head)]
        return recompute.tile_weights(self.spec, q, k, head, self.lse[head], np.arange(r0, r1), np.arange(c0, c1))

    def hidden(self, r0, r1, c0, c1):
        """Whether the mask hides the whole rectangle: keys after the last row's position (causal family), or
        before the first row's window (sliding). Such blocks are zeros; computing them would double a causal
        head's coarse tile and make a sliding-window head's cost grow with Q² instead of Q · window."""
        s = self.spec
        if s.mask not in ("causal", "sliding", "chunked"):
            return False
        after = c0 > r1 - 1 + s.offset
        before = s.mask == "sliding" and c1 - 1 <= r0 + s.offset - s.window
        return after or before

    def rows(self, head, rows):
        q, k = self.queries[head], self.keys[self.kv_head(head)]
        return recompute.head_weights(self.spec, q, k, head, rows=np.asarray(rows), lse=self.lse[head])

    def col_pooled(self, head, r0, r1, c0, c1, starts):
        return np.maximum.reduceat(self.block(head, r0, r1, c0, c1), starts, axis=1)

    def top_k(self, head, r0, r1, k):
        return recompute.top_k(self.block(head, r0, r1, 0, self.key_len), k)


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


class NeedsHead(ValueError):
    """A "qk" layer without a stored top-k: it is recomputed one head at a time (the route's 400)."""


def lod_answer(source, size):
    """(arrays, meta) of the `lod` route: every head's thumbnail."""
    thumbs, exact = lod(source, size)
    meta = {
        "query_len": source.query_len,
        "key_len": source.key_len,
        "size": size,
        "source": "stored" if source.kind == "qk" else "weights",
        "exact": exact,
    }
    return {"thumbs": thumbs}, meta


def topk_answer(source, head, layer=0):
    """(arrays, meta) of the `topk` route: every head's (head None) or one head's top-k; NeedsHead for a "qk"
    layer that stores none when no head is named (`layer`: its index, for the message)."""
    heads = list(range(source.num_heads)) if head is None else [head]
    if source.kind == "qk" and source.topk_keys is not None:
        keys = source.topk_keys[heads].astype(np.int32)
        codes, how = source.topk_codes[heads], "stored"
    elif source.kind == "qk" and head is None:
        raise NeedsHead(
            f"layer {layer} stores no top-k (query_len {source.query_len} > 8,192): it is recomputed "
            "from q/k one head at a time, pass head="
        )
    else:
        keys, codes = top_k(source, heads)
        how = "weights" if source.kind == "weights" else "recomputed"
    meta = {"k": int(keys.shape[-1]), "source": how, **({} if head is None else {"head": head})}
    return {"keys": keys, "codes": codes}, meta


def tile_answer(source, head, level, row, col):
    """(arrays, meta) of the `tile` route: one tile of one head (the route checks it lies inside the head)."""
    codes, how = tile(source, head, level, row, col)
    meta = {
        "head": head,
        "level": level,
        "row": row,
        "col": col,
        "tile": recompute.TILE,
        "query_len": source.query_len,
        "key_len": source.key_len,
        "levels": recompute.levels(source.query_len, source.key_len),
        "source": how,
    }
    return {"codes": codes}, meta
