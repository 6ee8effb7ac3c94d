"""The manifest's per-layer list for one logged probe (docs/format.md, "Layers"): the model's own layer and head
indices of the stored ones and what recomputes each layer's weights from the stored q/k, so the views neither
renumber a subset (``layers=[0, -1]`` stores the model's layers 0 and 5) nor assume 1/sqrt(d) scaling or a mask."""

from __future__ import annotations

import numpy as np
import torch

from .masks import allowed_mask, classify


def layer_list(recs, row: int, probe) -> list[dict]:
    """One entry per record of a probe (a stream's layers, or one stage of them), for batch row ``row``."""
    return [_layer_info(r, row, probe) for r in recs]


def _layer_info(r, row: int, probe) -> dict:
    info: dict = {"index": int(r.layer), "heads": [int(h) for h in r.heads]}
    if not r.has_qk or r.mask_kind in (None, "pending"):
        return info  # the fallback's weights are the model's own: nothing to recompute them with
    ex = r.extras
    sinks = ex.get("sinks")
    info.update(
        scaling=None if ex.get("scaling") is None else float(ex["scaling"]),
        softcap=None if ex.get("softcap") is None else float(ex["softcap"]),
        bias="none" if r.position_bias is None else "additive",
        sinks=None if sinks is None else [float(v) for v in np.asarray(sinks).reshape(-1)],
    )
    if r.kv_heads is not None and r.kv_map is not None:
        # Stored key heads: unrepeated when the selection keeps the h // n_rep pattern, else one per query head.
        info["kv_heads"] = [int(h) for h in (r.kv_heads if r.regular_gqa() else [r.kv_heads[m] for m in r.kv_map])]
    info.update(_row_mask(r, row, probe))
    return info


def _row_mask(r, row: int, probe) -> dict:
    """The mask of one batch row in the stored tokens' coordinates (padding removed), described as masks.py does."""
    q_len, k_len = r.weights.shape[2], r.weights.shape[3]
    if r.mask_kind == "tensor":
        if r.mask is None:
            return {"mask": "none"}
        allowed = r.mask[min(row, r.mask.shape[0] - 1)]
    else:
        allowed = allowed_mask(r.mask_kind, r.mask_params, r.key_valid, q_len, k_len)[row]
    q_keep = torch.as_tensor(probe.query_positions, dtype=torch.long)
    k_keep = torch.as_tensor(probe.key_positions, dtype=torch.long)
    kept = allowed.bool()[:, q_keep][:, :, k_keep][None]  # [1, 1|heads, q, k]
    ones_q, ones_k = torch.ones(1, len(q_keep), dtype=torch.bool), torch.ones(1, len(k_keep), dtype=torch.bool)
    kind, params = classify(kept, ones_q, ones_k, r.extras.get("sliding_window"))
    out: dict = {"mask": kind}
    if kind not in ("none", "tensor"):
        out["offset"] = int(params["offset"])
    if kind in ("sliding", "band"):
        out["window"] = int(params["window"])
    if kind == "chunked":
        out["chunk"] = int(params["chunk"])
    if kind == "prefix":
        out["prefix"] = int(params["prefix"][0])
    return out
