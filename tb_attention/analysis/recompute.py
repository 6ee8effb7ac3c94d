"""Attention weights rebuilt from stored queries and keys and a layer's recompute parameters (docs/format.md,
"Storage per layer"), one head and one block of rows at a time.

Constraints:
- Faithful: the same operations in the same order as the capture computes weights (capture/weights.py): logits =
  (q · scaling) · kᵀ, then softcap, then the relative position bias, then the mask; a softmax whose denominator
  includes the head's sink logit. Float32 throughout.
- Bounded: never more than one head × one block of rows of logits (``BLOCK_ELEMENTS``) at a time, so a
  32,768-token head (4 GiB of float32 logits) streams in 64 MiB pieces.
- A tile costs only its own rows × columns: weights are ``exp(logit − lse)`` with the per-row log-sum-exp ``lse``
  computed once (by the writer) over the whole row.
- Pure numpy: the writer (which stores ``lse`` and the level of detail) and the server (which rebuilds tiles) both
  use it and may not import each other.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

TILE = 256  # cells per tile side on every pyramid level
OVERVIEW = 256  # stored overview side (format.md)
BLOCK_ELEMENTS = 1 << 24  # logits per block of rows: 64 MiB of float32
BLOCK_ROWS = 512
MASKS = ("none", "causal", "sliding", "chunked", "band", "prefix")
BIASES = ("none", "relative")
# A recompute-only layer is stored only when every checked row is within this fraction of the row maximum.
RECOMPUTE_BOUND = 0.01


class NotRecomputable(ValueError):
    """A layer's parameters do not determine its weights (unknown scaling, an arbitrary mask, an untyped bias)."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """What turns one layer's q/k into its weights. ``group``: query heads per key head (GQA)."""

    scaling: float
    mask: str = "none"
    offset: int = 0
    window: Optional[int] = None
    chunk: Optional[int] = None
    prefix: Optional[int] = None
    softcap: Optional[float] = None
    sinks: Optional[np.ndarray] = None  # float32 [H]
    bias: Optional[np.ndarray] = None  # float32 [H, Q + K - 1]: query i, key j adds bias[h, j - i + Q - 1]
    group: int = 1

    @classmethod
    def from_layer(cls, entry: Optional[dict], num_heads: int, num_kv_heads: int, bias=None) -> Spec:
        """The spec of a manifest ``layers`` entry; NotRecomputable naming what is missing."""
        entry = entry or {}
        missing = [k for k in ("scaling", "mask") if entry.get(k) is None]
        if missing:
            raise NotRecomputable(f"unknown {' and '.join(missing)}")
        mask = entry["mask"]
        if mask not in MASKS:
            raise NotRecomputable(f"mask {mask!r} is not one a reader can rebuild (kinds: {', '.join(MASKS)})")
        needs = {"sliding": "window", "band": "window", "chunked": "chunk", "prefix": "prefix"}.get(mask)
        if needs and entry.get(needs) is None:
            raise NotRecomputable(f"{mask} mask without its {needs}")
        kind = entry.get("bias") or "none"
        if kind not in BIASES:
            raise NotRecomputable(f"an additive position term of kind {kind!r} that is not stored")
        if (kind == "relative") != (bias is not None):
            raise NotRecomputable("bias 'relative' needs its stored table" if bias is None else "unexpected bias table")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise NotRecomputable(f"{num_heads} query heads cannot share {num_kv_heads} key heads")
        sinks = entry.get("sinks")
        return cls(
            scaling=float(entry["scaling"]),
            mask=mask,
            offset=int(entry.get("offset") or 0),
            window=entry.get("window"),
            chunk=entry.get("chunk"),
            prefix=entry.get("prefix"),
            softcap=entry.get("softcap"),
            sinks=None if sinks is None else np.asarray(sinks, dtype=np.float32),
            bias=None if bias is None else np.asarray(bias, dtype=np.float32),
            group=num_heads // num_kv_heads,
        )


def allowed(spec: Spec, rows: np.ndarray, cols: np.ndarray) -> Optional[np.ndarray]:
    """bool [len(rows), len(cols)]: which keys each query attends to (masks.py's kinds), None = every key."""
    if spec.mask == "none":
        return None
    q = rows[:, None].astype(np.int64) + spec.offset
    k = cols[None, :].astype(np.int64)
    if spec.mask == "band":
        return np.abs(q - k) <= spec.window
    causal = k <= q
    if spec.mask == "causal":
        return causal
    if spec.mask == "sliding":
        return causal & (k > q - spec.window)
    if spec.mask == "chunked":
        return causal & (k // spec.chunk == q // spec.chunk)
    return causal | (k < spec.prefix)  # prefix


def logits(spec: Spec, q: np.ndarray, k: np.ndarray, head: int, rows, cols, query_len: int) -> np.ndarray:
    """float32 [r, c] logits of queries ``q`` [r, D] (rows ``rows``) against keys ``k`` [c, D] (columns ``cols``),
    −inf where masked. ``query_len``: the probe's query count (where the bias table's distance 0 is)."""
    out = (q.astype(np.float32) * np.float32(spec.scaling)) @ k.astype(np.float32).T
    if spec.softcap is not None:
        cap = np.float32(spec.softcap)
        out = np.tanh(out / cap) * cap
    if spec.bias is not None:
        out += spec.bias[head][cols[None, :] - rows[:, None] + query_len - 1]
    keep = allowed(spec, rows, cols)
    if keep is not None:
        out[~keep] = -np.inf
    return out


def row_blocks(query_len: int, key_len: int):
    """Row ranges of at most BLOCK_ELEMENTS logits and BLOCK_ROWS rows each (short blocks let a causal mask skip
    the keys no row of the block sees)."""
    step = max(1, min(BLOCK_ROWS, BLOCK_ELEMENTS // max(1, key_len)))
    for start in range(0, query_len, step):
        yield start, min(query_len, start + step)


def _sink(spec: Spec, head: int) -> Optional[np.float32]:
    return None if spec.sinks is None else np.float32(spec.sinks[head])


def softmax_rows(block: np.ndarray, sink: Optional[np.float32]) -> np.ndarray:
    """Turns a logits block into weights in place (one exp pass) and returns each row's log-sum-exp: the sink logit
    joins the denominator; a row with nothing to attend comes out zero, with lse −inf."""
    top = block.max(axis=1)
    if sink is not None:
        top = np.maximum(top, sink)
    safe = np.where(np.isfinite(top), top, 0).astype(np.float32)
    np.subtract(block, safe[:, None], out=block)
    np.exp(block, out=block)
    total = block.sum(axis=1, dtype=np.float32)
    if sink is not None:
        total += np.exp(sink - safe)
    alive = total > 0
    block *= np.where(alive, 1.0 / np.where(alive, total, 1.0), 0.0).astype(np.float32)[:, None]
    with np.errstate(divide="ignore"):
        return np.where(alive, safe + np.log(np.where(alive, total, 1.0)), -np.inf).astype(np.float32)


def weights_of(block: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """exp(logit − lse) of a logits block, 0 for rows with nothing to attend."""
    finite = np.isfinite(lse)
    out = np.exp(block - np.where(finite, lse, 0)[:, None]).astype(np.float32, copy=False)
    out[~finite] = 0.0
    return out


def head_weights(spec: Spec, q: np.ndarray, k: np.ndarray, head: int, rows=None, lse=None) -> np.ndarray:
    """float32 [r, K]: the weights of query rows ``rows`` (default all) of head ``head``; q is [Q, D] (this head),
    k [K, D] (its key head). With ``lse`` (the stored per-row normaliser) only these rows are computed."""
    query_len, key_len = q.shape[0], k.shape[0]
    spec = _bind(spec, query_len, key_len)
    rows = np.arange(query_len) if rows is None else np.asarray(rows)
    cols = np.arange(key_len)
    block = logits(spec, q[rows], k, head, rows, cols, query_len)
    if lse is None:
        softmax_rows(block, _sink(spec, head))
        return block
    return weights_of(block, np.asarray(lse)[rows])


def tile_weights(spec, q, k, head, lse, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 [r, c]: the weights of a rectangle, from the stored normaliser (costs only r × c logits)."""
    spec = _bind(spec, q.shape[0], k.shape[0])
    return weights_of(logits(spec, q[rows], k[cols], head, rows, cols, q.shape[0]), np.asarray(lse)[rows])


def _bind(spec: Spec, query_len: int, key_len: int) -> Spec:
    if spec.bias is not None and spec.bias.shape[1] != query_len + key_len - 1:
        raise ValueError(f"bias table has {spec.bias.shape[1]} distances, expected {query_len + key_len - 1}")
    return spec


def seen_keys(spec: Spec, start: int, stop: int, key_len: int) -> tuple[int, int]:
    """[lo, hi): the keys any of the rows [start, stop) may attend to; outside it every weight is 0."""
    lo, hi = 0, key_len
    last, first = stop - 1 + spec.offset, start + spec.offset
    if spec.mask in ("causal", "sliding", "chunked"):
        hi = last + 1
    elif spec.mask == "prefix":
        hi = max(last + 1, spec.prefix)
    elif spec.mask == "band":
        lo, hi = first - spec.window, last + spec.window + 1
    if spec.mask == "sliding":
        lo = first - spec.window + 1
    elif spec.mask == "chunked":
        lo = (first // spec.chunk) * spec.chunk
    lo, hi = max(0, lo), min(key_len, hi)
    return (lo, hi) if lo < hi else (0, 0)


def pool_edges(n: int, size: int) -> np.ndarray:
    """Cell boundaries of ``min(n, size)`` max-pooled cells over ``n`` positions: ⌊a·n/s⌋ (format.md)."""
    s = min(n, size)
    return (np.arange(s + 1, dtype=np.int64) * n) // s


def cbrt_codes(w: np.ndarray) -> np.ndarray:
    """uint8 codes of absolute weights: code = round(255 · w^(1/3)), w = (code/255)³."""
    return np.rint(255.0 * np.cbrt(np.clip(w, 0.0, 1.0))).astype(np.uint8)


def decode_codes(codes: np.ndarray) -> np.ndarray:
    return (codes.astype(np.float32) / 255.0) ** 3


def top_k(w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest weights (≥ 0), descending, ties to the lower key, and their key indices.

    k argmax passes (each taken entry set aside, then restored) beat a partition for the small k the format stores:
    4 passes over a 4,096² head take a fifth of np.argpartition's time."""
    rows = np.arange(w.shape[0])
    keys = np.empty((w.shape[0], k), np.int64)
    vals = np.empty((w.shape[0], k), np.float32)
    for i in range(k):
        keys[:, i] = w.argmax(axis=1)
        vals[:, i] = w[rows, keys[:, i]]
        w[rows, keys[:, i]] = -1.0
    for i in range(k):
        w[rows, keys[:, i]] = vals[:, i]
    return keys, vals


def max_pool(w: np.ndarray, cell: int) -> np.ndarray:
    """[r, c] → [⌈r/cell⌉, ⌈c/cell⌉]: the largest weight of each cell × cell block (a pyramid level)."""
    if cell == 1:
        return w
    rows = np.arange(0, w.shape[0], cell)
    cols = np.arange(0, w.shape[1], cell)
    return np.maximum.reduceat(np.maximum.reduceat(w, rows, axis=0), cols, axis=1)


def levels(query_len: int, key_len: int) -> int:
    """The coarsest pyramid level: the smallest z with one tile (TILE cells of side 2^z) covering the head."""
    return max(0, math.ceil(math.log2(max(query_len, key_len) / TILE))) if max(query_len, key_len) > TILE else 0


def tile_range(index: int, level: int, length: int) -> np.ndarray:
    """Positions a tile covers along one axis on a level (empty past the end)."""
    span = TILE << level
    return np.arange(index * span, min(length, (index + 1) * span))


def check_rows(query_len: int, count: int = 16) -> np.ndarray:
    """The rows the writer compares with the real weights: evenly spaced, always the first and the last."""
    return np.unique(np.linspace(0, query_len - 1, min(count, query_len)).round().astype(np.int64))


def row_errors(rebuilt: np.ndarray, real: np.ndarray) -> float:
    """Largest |ŵ − w| of any row as a fraction of that row's maximum (the recompute bound's measure)."""
    real = np.asarray(real, np.float32)
    scale = np.maximum(real.max(axis=-1, keepdims=True), 1e-30)
    return float((np.abs(rebuilt - real) / scale).max()) if real.size else 0.0


def relative_bias(bias: np.ndarray, keep: Optional[np.ndarray], offset: int, atol: float = 1e-4):
    """A Toeplitz table [H, Q + K − 1] equal to ``bias`` [H, Q, K] on the allowed entries up to a constant per row
    (softmax ignores it), or None when the term is not a function of the distance alone."""
    bias = np.asarray(bias, np.float32)
    heads, q_len, k_len = bias.shape
    rows, cols = np.arange(q_len), np.arange(k_len)
    diag = np.clip(rows + offset, 0, k_len - 1)
    centred = bias - bias[:, rows, diag][:, :, None]  # each row minus its own position's term
    dist = cols[None, :] - rows[:, None] + q_len - 1
    keep = np.ones((q_len, k_len), bool) if keep is None else keep
    table = np.zeros((heads, q_len + k_len - 1), np.float32)
    table[:, dist[keep]] = centred[:, keep]
    rebuilt = table[:, dist]
    tol = atol * (1.0 + float(np.abs(centred[:, keep]).max(initial=0.0)))
    return table if bool((np.abs(rebuilt - centred)[:, keep] <= tol).all()) else None
