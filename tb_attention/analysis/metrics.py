"""Per-head attention metrics (pure numpy; definitions in docs/metrics.md).

Every metric is computed per query row and then averaged over the valid rows (and batch examples) of each head.
Conventions shared by all functions:

- ``attn``: float array ``[..., Q, K]`` of attention probabilities (rows sum to 1 over the keys a query may see).
- ``query_mask`` (``[..., Q]``) / ``key_mask`` (``[..., K]``): True on real tokens, False on padding; broadcast
  against ``attn`` (e.g. ``[B, 1, Q]`` for ``[B, H, Q, K]``). Masked query rows are excluded from the mean. Masked
  keys are dropped and each row is renormalised over the remaining keys (a row with no mass left is excluded).
- ``per_row=True`` returns the per-row values ``[..., Q]`` with NaN on excluded rows instead of their mean ``[...]``.
- A head with no valid row gets NaN ("undefined"), never a made-up number.
"""

import numpy as np

# Its documented home is here (README, docs/metrics.md); it lives in induction_probe.py.
from tb_attention.analysis.induction_probe import repeated_random_tokens  # noqa: F401

# Stored metrics, in display order. `entropy` keeps the meaning it had before the metric set existed.
NAMES = (
    "entropy",
    "entropy_norm",
    "distance",
    "max_weight",
    "topk_mass",
    "sink_mass",
    "prev_token",
    "diagonal",
    "induction",
)
TOPK = 3
_CHUNK_ELEMENTS = 1 << 22  # attention weights per chunk in `compute`
DESCRIPTIONS = {
    "entropy": "mean attention entropy, nats",
    "entropy_norm": "entropy / log(number of keys the query may see), 0..1",
    "distance": "mean attention distance (token offset; patch-grid distance for ViT)",
    "max_weight": "mean of each row's largest weight",
    "topk_mass": f"mean mass on each row's {TOPK} largest weights",
    "sink_mass": "mean mass on the first (non-padding) key",
    "prev_token": "mean weight on the previous token",
    "diagonal": "mean weight on the query's own position",
    "induction": "mean mass on tokens that followed an earlier occurrence of the query token",
}


# -- helpers ---------------------------------------------------------------------------------------------------
def _prepare(attn, query_mask, key_mask):
    """-> (w float64 with masked keys zeroed and rows renormalised, row_ok bool [..., Q])."""
    w = np.asarray(attn)
    # float32 stays float32 (long probes: half the temporaries); everything else is computed in float64.
    w = w.astype(np.float32 if w.dtype == np.float32 else np.float64, copy=False)
    if w.ndim < 2:
        raise ValueError(f"attention must be at least 2-D [..., Q, K], got shape {w.shape}")
    if key_mask is not None:
        w = w * np.asarray(key_mask, bool)[..., None, :]
    mass = w.sum(-1)
    row_ok = mass > 0
    if query_mask is not None:
        row_ok = row_ok & np.asarray(query_mask, bool)
    if key_mask is not None or not np.allclose(mass, 1.0, atol=1e-3):
        with np.errstate(divide="ignore", invalid="ignore"):
            w = w / np.where(mass > 0, mass, 1.0).astype(w.dtype)[..., None]
    return w, np.broadcast_to(row_ok, w.shape[:-1])


def _reduce(rows, row_ok, per_row):
    rows = np.where(row_ok, rows, np.nan)
    if per_row:
        return rows
    return nanmean(rows, axis=-1)


def nanmean(x, axis):
    """Mean over `axis` ignoring NaN; NaN (without a warning) where everything is NaN."""
    x = np.asarray(x, np.float64)
    ok = ~np.isnan(x)
    count = ok.sum(axis=axis)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _self_attention(w, what):
    if w.shape[-1] != w.shape[-2]:
        return False
    return True


def _offset_weight(w, offset):
    """w[..., i, i - offset] per row i (0 where that key does not exist) and whether it exists."""
    q = w.shape[-2]
    i = np.arange(q)
    j = i - offset
    exists = (j >= 0) & (j < w.shape[-1])
    vals = np.zeros(w.shape[:-1])
    vals[..., exists] = w[..., i[exists], j[exists]]
    return vals, np.broadcast_to(exists, w.shape[:-1])


def is_causal(attn, tol=0.0):
    """True when attn is square and holds no weight above the diagonal (a causal / decoder head)."""
    w = np.asarray(attn)
    if w.shape[-1] != w.shape[-2]:
        return False
    upper = np.triu_indices(w.shape[-1], 1)
    mats = w.reshape((-1,) + w.shape[-2:])
    # A block of matrices at a time: no full-size temporary for long probes, few calls for short ones.
    block = max(1, _CHUNK_ELEMENTS // max(1, w.shape[-1] * w.shape[-2]))
    return not any((mats[i : i + block][:, upper[0], upper[1]] > tol).any() for i in range(0, len(mats), block))


def key_counts(shape, key_mask=None, causal=False):
    """Number of keys each query row may attend to: valid keys, and only keys j <= i when causal. [..., Q]."""
    q, k = shape[-2], shape[-1]
    allowed = np.ones((q, k), bool)
    if causal:
        allowed = np.tril(allowed)
    if key_mask is not None:
        allowed = allowed & np.asarray(key_mask, bool)[..., None, :]
    return allowed.sum(-1)


# -- metrics ---------------------------------------------------------------------------------------------------
def entropy(attn, query_mask=None, key_mask=None, *, per_row=False):
    """-sum_k w log w of each row, in nats."""
    w, ok = _prepare(attn, query_mask, key_mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
    return _reduce(-plogp.sum(-1), ok, per_row)


def entropy_norm(attn, query_mask=None, key_mask=None, *, causal=None, per_row=False):
    """Row entropy / log(n), n = keys the row may see (valid keys; j <= i when causal). Rows with n < 2 excluded.

    ``causal=None`` detects causality: square attention with no weight above the diagonal.
    """
    if causal is None:
        causal = is_causal(attn)
    w, ok = _prepare(attn, query_mask, key_mask)
    n = np.broadcast_to(key_counts(w.shape, key_mask, causal), w.shape[:-1])
    h = entropy(w, per_row=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = h / np.log(np.where(n >= 2, n, 2))
    return _reduce(rows, ok & (n >= 2), per_row)


def distance(attn, query_mask=None, key_mask=None, *, query_coords=None, key_coords=None, per_row=False):
    """sum_j w_ij * |pos_i - pos_j| per row: the mean distance attended over.

    Positions are token indices by default. ``query_coords`` [Q, d] / ``key_coords`` [K, d] give other positions
    (e.g. patch (row, col) for ViT, see `patch_coords`); a NaN coordinate marks a token without a position (CLS,
    registers): such queries are excluded and such keys dropped, renormalising the row over the rest.
    """
    w = np.asarray(attn)
    q, k = w.shape[-2], w.shape[-1]
    qc = np.arange(q, dtype=np.float64)[:, None] if query_coords is None else np.asarray(query_coords, np.float64)
    kc = np.arange(k, dtype=np.float64)[:, None] if key_coords is None else np.asarray(key_coords, np.float64)
    if qc.ndim == 1:
        qc = qc[:, None]
    if kc.ndim == 1:
        kc = kc[:, None]
    q_has = ~np.isnan(qc).any(-1)
    k_has = ~np.isnan(kc).any(-1)
    km = k_has if key_mask is None else (np.asarray(key_mask, bool) & k_has)
    qm = q_has if query_mask is None else (np.asarray(query_mask, bool) & q_has)
    w, ok = _prepare(w, qm, km)
    d = np.sqrt(((np.nan_to_num(qc)[:, None, :] - np.nan_to_num(kc)[None, :, :]) ** 2).sum(-1))  # [Q, K]
    return _reduce((w * d).sum(-1), ok, per_row)


def patch_coords(num_tokens, grid):
    """Coordinates [num_tokens, 2] for a ViT sequence: leading special tokens (CLS, registers) get NaN, then the
    row-major (row, col) of each patch. ``grid`` = (rows, cols)."""
    rows, cols = grid
    special = num_tokens - rows * cols
    if special < 0:
        raise ValueError(f"grid {rows}x{cols} has more patches than the {num_tokens} tokens")
    coords = np.full((num_tokens, 2), np.nan)
    r, c = np.divmod(np.arange(rows * cols), cols)
    coords[special:, 0], coords[special:, 1] = r, c
    return coords


def max_weight(attn, query_mask=None, key_mask=None, *, per_row=False):
    """The largest weight of each row."""
    w, ok = _prepare(attn, query_mask, key_mask)
    return _reduce(w.max(-1), ok, per_row)


def topk_mass(attn, query_mask=None, key_mask=None, *, k=TOPK, per_row=False):
    """Sum of the k largest weights of each row (1 when the row sees k keys or fewer)."""
    w, ok = _prepare(attn, query_mask, key_mask)
    k = min(int(k), w.shape[-1])
    top = np.partition(w, w.shape[-1] - k, axis=-1)[..., w.shape[-1] - k :]
    return _reduce(top.sum(-1), ok, per_row)


def sink_mass(attn, query_mask=None, key_mask=None, *, per_row=False):
    """Weight on the first key that is not padding (the "attention sink", usually BOS/CLS)."""
    w, ok = _prepare(attn, query_mask, key_mask)
    if key_mask is None:
        rows = w[..., 0]
    else:
        km = np.broadcast_to(np.asarray(key_mask, bool), w.shape[:-2] + (w.shape[-1],))
        first = np.argmax(km, axis=-1)  # [...]
        rows = np.take_along_axis(w, np.broadcast_to(first[..., None, None], w.shape[:-1] + (1,)), -1)[..., 0]
    return _reduce(rows, ok, per_row)


def prev_token(attn, query_mask=None, key_mask=None, *, per_row=False):
    """Weight of query i on key i-1 (self-attention only; row 0 and rows whose previous key is padding excluded)."""
    w, ok = _prepare(attn, query_mask, key_mask)
    if not _self_attention(w, "prev_token"):
        return _reduce(np.full(w.shape[:-1], np.nan), ok, per_row)
    vals, exists = _offset_weight(w, 1)
    if key_mask is not None:
        km = np.asarray(key_mask, bool)
        prev_valid = np.concatenate([np.zeros(km.shape[:-1] + (1,), bool), km[..., :-1]], -1)
        exists = exists & prev_valid
    return _reduce(vals, ok & exists, per_row)


def diagonal(attn, query_mask=None, key_mask=None, *, per_row=False):
    """Weight of query i on its own position i (self-attention only)."""
    w, ok = _prepare(attn, query_mask, key_mask)
    if not _self_attention(w, "diagonal"):
        return _reduce(np.full(w.shape[:-1], np.nan), ok, per_row)
    vals, _ = _offset_weight(w, 0)
    return _reduce(vals, ok, per_row)


def induction_targets(tokens):
    """bool [..., Q, Q]: key j is an induction target of query i when j < i and token[j-1] == token[i].

    ``tokens``: ids or strings, [..., Q]. On a repeated random sequence ``s s`` the target of the m-th token of
    the second copy is the (m+1)-th token of the first.
    """
    t = np.asarray(tokens)
    q = t.shape[-1]
    same = t[..., :, None] == t[..., None, :]  # [..., i, j'] token[i] == token[j']
    targets = np.zeros(t.shape[:-1] + (q, q), bool)
    targets[..., :, 1:] = same[..., :, :-1]  # key j = j' + 1
    return targets & np.tril(np.ones((q, q), bool), -1)


def induction(attn, tokens, query_mask=None, key_mask=None, *, per_row=False):
    """Mass of each row on its induction targets (`induction_targets`); rows without a target are excluded."""
    w, ok = _prepare(attn, query_mask, key_mask)
    if not _self_attention(w, "induction"):
        return _reduce(np.full(w.shape[:-1], np.nan), ok, per_row)
    targets = induction_targets(tokens)
    if key_mask is not None:
        targets = targets & np.asarray(key_mask, bool)[..., None, :]
    has = targets.any(-1)
    return _reduce((w * targets).sum(-1), ok & has, per_row)


# -- all at once -----------------------------------------------------------------------------------------------
def compute(attn, *, query_mask=None, key_mask=None, tokens=None, query_coords=None, key_coords=None, causal=None):
    """All metrics of `NAMES` per layer and head: {name: float32 [L, H]}.

    attn: [L, H, Q, K] or, for a probe batch, [L, B, H, Q, K]; masks [Q]/[K] or [B, Q]/[B, K];
    tokens (ids or strings) [Q] or [B, Q] (needed for `induction`, NaN without it). Means run over every valid row
    of every example.
    """
    w = np.asarray(attn)
    if w.ndim == 4:
        w = w[:, None]
        query_mask = None if query_mask is None else np.asarray(query_mask)[None]
        key_mask = None if key_mask is None else np.asarray(key_mask)[None]
        tokens = None if tokens is None else np.asarray(tokens)[None]
    if w.ndim != 5:
        raise ValueError(f"attention must be [L, H, Q, K] or [L, B, H, Q, K], got shape {w.shape}")
    qm = None if query_mask is None else np.asarray(query_mask, bool)[:, None, :]  # [B, 1, Q] vs [B, H, Q]
    km = None if key_mask is None else np.asarray(key_mask, bool)[:, None, :]
    if causal is None:
        causal = is_causal(w)
    num_layers, batch, heads, q, k = w.shape
    square = q == k
    # Shared by every chunk: keys each row may see, |i - j|, induction targets, the first real key, prev-key validity.
    counts = key_counts((q, k), km, causal)  # [Q] or [B, 1, Q]
    offsets = np.abs(np.arange(q)[:, None] - np.arange(k)[None, :]).astype(np.float32)
    targets = None
    if tokens is not None and square:
        targets = induction_targets(np.asarray(tokens)[:, None, :])  # [B, 1, Q, Q]
        if km is not None:
            targets = targets & km[..., None, :]
    first_key = None if km is None else np.argmax(np.broadcast_to(km, (batch, 1, k)), axis=-1)  # [B, 1]
    prev_ok = np.arange(q) >= 1
    if km is not None and square:
        prev_ok = prev_ok & np.concatenate([np.zeros((batch, 1, 1), bool), km[..., :-1]], -1)

    # Layers and heads are merged ([B, L*H, Q, K]) and processed a few at a time, so temporaries stay small for
    # long probes (2,048 tokens: one head per chunk) and short probes take one pass.
    if batch == 1:  # a view: [1, L*H, Q, K]
        blocks = [(0, w.reshape(1, num_layers * heads, q, k))]
    else:  # one layer at a time: no copy of the whole batch
        blocks = [(layer * heads, w[layer]) for layer in range(num_layers)]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, batch * q * k))
    sums = np.zeros((len(NAMES), num_layers * heads))
    counts_ok = np.zeros((len(NAMES), num_layers * heads))
    index = {name: i for i, name in enumerate(NAMES)}
    for offset, block in blocks:
        for c0 in range(0, block.shape[1], chunk):
            _chunk(
                block[:, c0 : c0 + chunk],
                offset + c0,
                sums,
                counts_ok,
                index,
                qm,
                km,
                counts,
                offsets,
                targets,
                first_key,
                prev_ok,
                query_coords,
                key_coords,
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(counts_ok > 0, sums / np.maximum(counts_ok, 1), np.nan)
    return {name: means[i].reshape(num_layers, heads).astype(np.float32) for name, i in index.items()}


def _chunk(
    raw,
    h0,
    sums,
    counts_ok,
    index,
    qm,
    km,
    counts,
    offsets,
    targets,
    first_key,
    prev_ok,
    query_coords,
    key_coords,
    r0=0,
    square=None,
):
    """Adds the row sums and valid-row counts of every metric for heads [h0, h0 + n) (raw: [B, n, Q, K]).

    ``r0``/``square``: raw holds only query rows r0.. of a (square or not) probe, and the per-row arguments only
    those rows (head_metrics.py streams a long head in row blocks)."""
    q, k = raw.shape[-2:]
    square = q == k if square is None else square
    n = raw.shape[1]
    part, ok = _prepare(raw, qm, km)  # [B, n, Q, K], ok [B, n, Q]
    rows = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        logw = np.log(np.where(part > 0, part, 1))
    ent = -(part * logw).sum(-1)
    del logw
    rows["entropy"] = (ent, ok)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["entropy_norm"] = (ent / np.log(np.maximum(counts, 2)), ok & (counts >= 2))
    if query_coords is None and key_coords is None:
        rows["distance"] = ((part * offsets).sum(-1), ok)
    else:
        d = distance(raw, qm, km, query_coords=query_coords, key_coords=key_coords, per_row=True)
        rows["distance"] = (np.nan_to_num(d), ~np.isnan(d))
    rows["max_weight"] = (part.max(-1), ok)
    kk = min(TOPK, k)
    rows["topk_mass"] = (np.partition(part, k - kk, axis=-1)[..., k - kk :].sum(-1), ok)
    if first_key is None:
        rows["sink_mass"] = (part[..., 0], ok)
    else:
        idx = np.broadcast_to(first_key[:, :, None, None], part.shape[:-1] + (1,))
        rows["sink_mass"] = (np.take_along_axis(part, idx, -1)[..., 0], ok)
    if square:
        diag = np.diagonal(part, r0, -2, -1)  # row i of the block is query r0 + i
        prev = np.zeros(part.shape[:-1], part.dtype)
        prev[..., max(0, 1 - r0) :] = np.diagonal(part, r0 - 1, -2, -1)
        rows["diagonal"] = (diag, ok)
        rows["prev_token"] = (prev, ok & prev_ok)
        if targets is not None:
            rows["induction"] = ((part * targets).sum(-1), ok & targets.any(-1))
    for name, (values, valid) in rows.items():
        valid = np.broadcast_to(valid, values.shape)
        i = index[name]
        sums[i, h0 : h0 + n] += np.where(valid, values, 0).sum(axis=(0, 2))
        counts_ok[i, h0 : h0 + n] += valid.sum(axis=(0, 2))
