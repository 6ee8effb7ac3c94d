"""The manifest's per-layer list for one logged probe (docs/format.md, "Layers"): the model's own layer and head
indices of the stored ones and what recomputes each layer's weights from the stored q/k, so the views neither
renumber a subset (``layers=[0, -1]`` stores the model's layers 0 and 5) nor assume 1/sqrt(d) scaling or a mask."""

from __future__ import annotations

import numpy as np
import torch

from tb_attention.analysis.recompute import relative_bias

from .masks import allowed_mask, classify


def layer_list(recs, row: int, probe, relative=None) -> list[dict]:
    """One entry per record of a probe (a stream's layers, or one stage of them), for batch row ``row``.

    ``relative``: per record, whether to look for a relative position table in its position term (a layer to be
    stored as q/k only): found, its ``bias`` is the table (the writer records ``"relative"`` and stores it)."""
    relative = relative or [False] * len(recs)
    return [_layer_info(r, row, probe, rel) for r, rel in zip(recs, relative, strict=True)]


def _layer_info(r, row: int, probe, relative: bool = False) -> dict:
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
    mask, kept = _row_mask(r, row, probe)
    info.update(mask)
    if relative and r.position_bias is not None and mask["mask"] != "tensor":
        offset = mask.get("offset", len(probe.key_positions) - len(probe.query_positions))
        table = _relative(r, row, probe, None if kept is None else kept[0, 0].numpy(), offset)
        if table is not None:
            info["bias"] = table  # T5's buckets, ALiBi: the writer stores the table with the layer's q/k
    return info


def _relative(r, row: int, probe, keep, offset: int):
    """[heads, Q + K − 1] when the row's position term depends only on the query-key distance (recompute.py)."""
    bias = r.position_bias[min(row, r.position_bias.shape[0] - 1)]  # [heads | 1, Q, K], padding included
    q_keep = torch.as_tensor(probe.query_positions, dtype=torch.long)
    k_keep = torch.as_tensor(probe.key_positions, dtype=torch.long)
    bias = bias[:, q_keep][:, :, k_keep].float().expand(len(r.heads), -1, -1)
    return relative_bias(bias.numpy(), keep, offset)


def _row_mask(r, row: int, probe) -> tuple[dict, torch.Tensor | None]:
    """The mask of one batch row in the stored tokens' coordinates (padding removed), described as masks.py does,
    and the allowed mask itself ([1, 1|heads, q, k], None = every key)."""
    q_len, k_len = r.shape[2], r.shape[3]
    if r.mask_kind == "tensor":
        if r.mask is None:
            return {"mask": "none"}, None
        allowed = r.mask[min(row, r.mask.shape[0] - 1)]
    else:
        if len(probe.query_positions) == q_len and len(probe.key_positions) == k_len:
            # No padding in this row: the stored tokens are the model's, so the description the capture found is
            # already in stored coordinates (classifying again cost 2 s per layer at 4,096 tokens); the mask
            # itself only matters to a position term's check.
            needed = r.position_bias is not None
            kept = allowed_mask(r.mask_kind, r.mask_params, r.key_valid, q_len, k_len)[row][None] if needed else None
            return _described(r.mask_kind, r.mask_params, row), kept
        allowed = allowed_mask(r.mask_kind, r.mask_params, r.key_valid, q_len, k_len)[row]
    q_keep = torch.as_tensor(probe.query_positions, dtype=torch.long)
    k_keep = torch.as_tensor(probe.key_positions, dtype=torch.long)
    kept = allowed.bool()[:, q_keep][:, :, k_keep][None]  # [1, 1|heads, q, k]
    ones_q, ones_k = torch.ones(1, len(q_keep), dtype=torch.bool), torch.ones(1, len(k_keep), dtype=torch.bool)
    kind, params = classify(kept, ones_q, ones_k, r.extras.get("sliding_window"))
    return _described(kind, params, 0), kept


def _described(kind: str, params: dict, row: int) -> dict:
    """A mask description as the manifest stores it (`prefix` is per batch row in masks.py's parameters)."""
    out: dict = {"mask": kind}
    if kind not in ("none", "tensor"):
        out["offset"] = int(params["offset"])
    if kind in ("sliding", "band"):
        out["window"] = int(params["window"])
    if kind == "chunked":
        out["chunk"] = int(params["chunk"])
    if kind == "prefix":
        out["prefix"] = int(params["prefix"][row])
    return out
