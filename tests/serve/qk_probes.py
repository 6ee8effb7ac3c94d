"""Probe steps whose layers store q/k only (format.md, "Storage per layer"), written by hand with the codec and
analysis/recompute.py as the writer would, plus the full weights they stand for (the tests' brute force)."""

import numpy as np

from tb_attention.analysis import recompute, summary
from tb_attention.format import codec, manifest, metadata

CONTENT = {"version": metadata.VERSION, "kind": "probe"}


def layer_entry(index, d_head, mask="causal", bias="none", sinks=None, window=None):
    return {
        "index": index,
        "scaling": 1.0 / np.sqrt(d_head),
        "mask": mask,
        "offset": 0,
        "window": window,
        "chunk": None,
        "prefix": None,
        "softcap": None,
        "bias": bias,
        "sinks": sinks,
    }


def qk_step(rng, layers=1, heads=2, kv_heads=1, q_len=300, k_len=None, d_head=8, storage="qk", topk=4, **entry):
    """(blobs, weights float32 [L, H, Q, K] or None when too big, queries, keys): every layer stored as `storage`
    ("qk", "both" or "weights"); q/k scaled so that heads are peaked (tiles have structure)."""
    k_len = k_len or q_len
    q = (rng.normal(size=(layers, heads, q_len, d_head)) * 2.0).astype(np.float16)
    k = (rng.normal(size=(layers, kv_heads, k_len, d_head)) * 2.0).astype(np.float16)
    entries = [layer_entry(i, d_head, **entry) for i in range(layers)]
    small = heads * q_len * k_len <= 1 << 22
    weights = np.zeros((layers, heads, q_len, k_len), np.float32) if small else None
    slots = []
    for lay, e in enumerate(entries):
        table = None
        if e["bias"] == "relative":
            table = (rng.normal(size=(heads, q_len + k_len - 1)) * 0.5).astype(np.float32)
        spec = recompute.Spec.from_layer(e, heads, kv_heads, bias=table)
        g = heads // kv_heads
        if weights is not None:
            for h in range(heads):
                weights[lay, h] = recompute.head_weights(spec, q[lay, h], k[lay, h // g], h)
        if storage != "qk":
            slots.append(codec.compress(codec.attention_container(weights[lay])))
            continue
        summaries = [summary.summarise_head(spec, q[lay, h], k[lay, h // g], h, topk) for h in range(heads)]
        slots.append(
            codec.recompute_container(
                np.stack([s.lse for s in summaries]),
                recompute.cbrt_codes(np.stack([s.overview for s in summaries])),
                k_len,
                np.stack([s.topk_keys for s in summaries]) if topk else None,
                recompute.cbrt_codes(np.stack([s.topk_weights for s in summaries])) if topk else None,
                bias=table,
                meta={"k": topk, "checked_rows": 0, "max_error": 0.0},
            )
        )
    fields = {
        "version": metadata.VERSION,
        "tokens": [f"t{i}" for i in range(q_len)],
        "key_tokens": None if k_len == q_len else [f"k{i}" for i in range(k_len)],
        "num_layers": layers,
        "num_heads": heads,
        "query_len": q_len,
        "key_len": k_len,
        "has_qk": True,
        "num_kv_heads": kv_heads,
        "d_head": d_head,
        "layers": entries,
        "storage": [storage] * layers,
    }
    blobs = [manifest.encode(fields), *slots, *(codec.qk_container(a, b) for a, b in zip(q, k))]
    return blobs, weights, q, k


def brute_tile(weights, level, row, col, tile=recompute.TILE):
    """The tile by definition: the max-pool of the full weights over the tile's cells."""
    span, cell = tile << level, 1 << level
    part = weights[row * span : (row + 1) * span, col * span : (col + 1) * span]
    return recompute.max_pool(part, cell)
