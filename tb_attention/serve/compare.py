"""`head_diff` and `rollout` over layers of any storage, one head at a time (docs/http_api.md).

Neither ever holds a step's full attention: head_diff compares one head's rows at a time (a sample of rows for
long or q/k-only probes, where rebuilding every row of every head would cost the whole model's attention), and
rollout fuses each layer's heads as it reads them, refusing (413) a step whose rollout would not fit a bound.
"""

import numpy as np
from tensorboard import errors

from tb_attention.analysis import evolution
from tb_attention.serve.layers import TooLargeError, sample_rows

DIFF_ROWS = 64  # query rows a sampled head_diff compares: evenly spaced, the first and the last among them
DIFF_ALL_ROWS_UP_TO = 1024  # weight-stored probes up to this many queries compare every row
ROLLOUT_MAX_TOKENS = 2048
ROLLOUT_MAX_WEIGHTS = 1 << 28  # L·H·Q·K weights read (or rebuilt from q/k) for one rollout
ROLLOUT_MAX_OUTPUT = 1 << 26  # L·Q·Q: the answer (float32) and its float64 intermediates stay under ~1.5 GiB


def _shape(m):
    return [m.num_layers, m.num_heads, m.query_len, m.key_len]


def head_diff_impl(layers, ctx, a, b):
    """(jsd float32 [L, H], meta) between two steps `a` and `b`, each (blobs, manifest)."""
    (blobs_a, man_a), (blobs_b, man_b) = a, b
    if _shape(man_a) != _shape(man_b):
        raise errors.InvalidArgumentError(
            f"cannot compare: attention shapes differ ({_shape(man_a)} vs {_shape(man_b)}) [L, H, Q, K]"
        )
    num_layers, num_heads, query_len = man_a.num_layers, man_a.num_heads, man_a.query_len
    recomputed = any(not m.weights_stored(layer) for m in (man_a, man_b) for layer in range(num_layers))
    sampled = recomputed or query_len > DIFF_ALL_ROWS_UP_TO
    rows = sample_rows(query_len, DIFF_ROWS if sampled else None)
    jsd = np.empty((num_layers, num_heads), np.float32)
    for layer in range(num_layers):
        source_a = layers.source(ctx, blobs_a, man_a, layer)
        source_b = layers.source(ctx, blobs_b, man_b, layer)
        for head in range(num_heads):
            jsd[layer, head] = evolution.js_divergence(source_a.rows(head, rows), source_b.rows(head, rows))
    meta = {"measure": "jensen_shannon_bits", "sampled": bool(sampled and len(rows) < query_len), "rows": len(rows)}
    return jsd, meta


def rollout_impl(layers, ctx, blobs, manifest, fusion, residual):
    """rollout float32 [L, Q, Q]: each layer's heads fused as they are read, then evolution.rollout."""
    m = manifest
    if m.query_len != m.key_len:
        raise errors.InvalidArgumentError("rollout needs self-attention (this probe is cross-attention)")
    weights = m.num_layers * m.num_heads * m.query_len * m.key_len
    output = m.num_layers * m.query_len * m.query_len
    if m.query_len > ROLLOUT_MAX_TOKENS or weights > ROLLOUT_MAX_WEIGHTS or output > ROLLOUT_MAX_OUTPUT:
        raise TooLargeError(
            f"rollout of {m.num_layers} layers x {m.num_heads} heads x {m.query_len} tokens is over its bound "
            f"(at most {ROLLOUT_MAX_TOKENS} tokens, {ROLLOUT_MAX_WEIGHTS:,} weights and {ROLLOUT_MAX_OUTPUT:,} "
            "rollout values): it would need the whole step's attention"
        )
    reduce = {"mean": np.add, "max": np.maximum, "min": np.minimum}[fusion]
    fused = np.empty((m.num_layers, 1, m.query_len, m.query_len), np.float32)
    all_rows = np.arange(m.query_len)
    for layer in range(m.num_layers):
        source = layers.source(ctx, blobs, m, layer)
        fused[layer, 0] = source.rows(0, all_rows)
        for head in range(1, m.num_heads):
            reduce(fused[layer, 0], source.rows(head, all_rows), out=fused[layer, 0])
        if fusion == "mean":
            fused[layer, 0] /= m.num_heads
    return evolution.rollout(fused, "mean", residual)  # one (fused) head per layer: its mean is itself
