"""Each stored layer's attention slot, on the writer's background thread: cbrt8 weights, or, for a q/k-only layer,
the `recompute` container (docs/format.md) built from the float16 q/k exactly as they are stored.

Constraints:
- Never store something that recomputes wrong: `recompute.check_rows` rows per head are rebuilt from the stored q/k
  and compared with the real weights (given, or the check rows of a capture without weights); a layer over
  `RECOMPUTE_BOUND` is stored as weights with one warning naming it, or, without weights to store instead, the
  step fails with an error naming it (raised at the writer's next call).
- Bounded: one head and one block of rows at a time (`recompute.row_blocks`), never a layer of float32. The
  normalisers, overview, top-k and (without weights) the per-head metrics come from one pass over each head
  (`summary.summarise_head`, its blocks handed to `HeadMetrics.add_block`).
"""

import collections
import functools
import warnings

import numpy as np

from tb_attention.analysis import recompute, summary
from tb_attention.analysis.head_metrics import HeadMetrics
from tb_attention.format import codec

TOPK = 4  # each query's strongest keys, for the head view's lines
TOPK_MAX_QUERIES = 8192  # beyond this only TOPK_LONG keys per query (format.md)
# 2 keys at 32,768 tokens are 6.3 MB per 32-head layer: within its 350 MB budget, where 4 would not be; without any,
# the head view had to rebuild each head whole (seconds per head) to draw its lines.
TOPK_LONG = 2

Slots = collections.namedtuple("Slots", "blobs storage layers metrics")


class RecomputeError(ValueError):
    """A q/k-only layer rebuilds wrong and there are no weights to store instead."""


def attention_slots(job, compress):
    """-> Slots: the attention blob of each layer, the final `storage` and `layers` of the manifest, and the
    per-head metrics {name: [L, H]} when they were computed here (no weights were given)."""
    storage = None if job.storage is None else list(job.storage)
    if storage is None or "qk" not in storage:
        blobs = [compress(codec.attention_container(layer)) for layer in job.attention]
        return Slots(blobs, None, _no_tables(job.layers, storage), None)
    num_layers, heads, query_len, key_len = job.shape
    layers = [dict(e) for e in job.layers]
    options = job.metrics
    accs = None
    if job.attention is None and options is not None:
        causal = query_len == key_len and all(_causal(e) for e in layers)
        extra = {k: options[k] for k in ("query_coords", "key_coords") if k in options}
        tokens = options.get("tokens")
        accs = [HeadMetrics(heads, query_len, key_len, causal=causal, tokens=tokens, **extra) for _ in layers]
    blobs = []
    for i in range(num_layers):
        if storage[i] != "qk":
            blobs.append(compress(codec.attention_container(job.attention[i])))
            continue
        table = None if job.tables is None else job.tables[i]
        spec = recompute.Spec.from_layer(layers[i], heads, job.keys.shape[1], bias=table)
        q, k = job.queries[i], job.keys[i]
        rows, real = _real_rows(job, i, query_len)
        error = max((_row_error(spec, q, k, h, rows, real[h]) for h in range(heads)), default=0.0)
        if error > recompute.RECOMPUTE_BOUND:
            where = f"{job.tag!r} layer {layers[i]['index']}"
            found = f"weights rebuilt from the stored q/k are off by {error:.3g} of the row maximum (bound 0.01)"
            if job.attention is None:
                raise RecomputeError(
                    f"{where}: {found} and there are no weights to store instead, so the step was not written; "
                    "check the layer's scaling, mask, softcap and bias, or log it with its attentions"
                )
            warnings.warn(f"tb-attention: {where}: {found}; stored as weights", stacklevel=2)
            storage[i] = "both"
            blobs.append(compress(codec.attention_container(job.attention[i])))
            continue
        topk = TOPK if query_len <= TOPK_MAX_QUERIES else TOPK_LONG
        lse, overview, top_keys, top_w = summarise_layer(spec, q, k, topk, None if accs is None else accs[i])
        meta = {"k": top_keys.shape[-1], "checked_rows": len(rows), "max_error": float(error)}
        cbrt = recompute.cbrt_codes
        blobs.append(
            compress(codec.recompute_container(lse, cbrt(overview), key_len, top_keys, cbrt(top_w), table, meta))
        )
    metrics = None
    if accs is not None:
        per_layer = [acc.values() for acc in accs]
        metrics = {name: np.stack([v[name] for v in per_layer]) for name in per_layer[0]}
    return Slots(blobs, storage if "qk" in storage else None, _no_tables(layers, storage), metrics)


def _no_tables(layers, storage):
    """A relative position table is stored only in a q/k-only layer's container: elsewhere the manifest says that the
    layer had an additive term it does not hold."""
    if layers is None or storage is None:
        return layers
    out = []
    for entry, kind in zip(layers, storage):
        out.append({**entry, "bias": "additive"} if kind != "qk" and entry.get("bias") == "relative" else entry)
    return out


def _causal(entry):
    """What metrics.is_causal would find in the weights of a self-attention layer with this mask."""
    return entry.get("mask") in ("causal", "sliding", "chunked") and not entry.get("offset")


def _real_rows(job, layer, query_len):
    """(rows, real weights [H, n, K]) the rebuilt weights are compared with; no rows when none exist."""
    if job.attention is not None:
        rows = recompute.check_rows(query_len)
        return rows, job.attention[layer][:, rows]
    if job.check_rows is not None:
        return job.check_rows, job.check_weights[layer]
    return np.zeros(0, np.int64), np.zeros((job.shape[1], 0, job.shape[3]), np.float32)


def _row_error(spec, q, k, head, rows, real):
    if not len(rows):
        return 0.0
    rebuilt = recompute.head_weights(spec, q[head], k[head // spec.group], head, rows=rows)
    return recompute.row_errors(rebuilt, real)


def summarise_layer(spec, q, k, topk, acc=None):
    """summary.summarise_head for every head of a layer (q [H, Q, D], k [H_kv, K, D]), each block's weights also fed
    to the per-head metrics (`acc`) so that they cost no second pass: -> lse [H, Q], overview [H, Sq, Sk]
    (max-pooled weights), top-k keys [H, Q, k] and their weights."""
    found = []
    for h in range(q.shape[0]):
        on_block = None if acc is None else functools.partial(acc.add_block, h)
        found.append(summary.summarise_head(spec, q[h], k[h // spec.group], h, topk, on_block=on_block))
    return tuple(
        np.stack([getattr(f, name) for f in found]) for name in ("lse", "overview", "topk_keys", "topk_weights")
    )
