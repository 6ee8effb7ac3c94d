"""Attention probabilities recomputed from the q/k an attention function really received.

Everything runs under ``no_grad`` in float32 on the tensors' own device (the result lands on the CPU), so the
model's autograd graph is never extended, and only the selected heads are ever materialised.
"""

from __future__ import annotations

import math

import torch

# Rows of this many query x key logits are computed at a time, bounding the temporary memory for long sequences.
_CHUNK_ELEMENTS = 1 << 24


def kv_selection(heads: list[int], num_heads: int, num_kv_heads: int) -> tuple[list[int], list[int]]:
    """Key heads needed by the selected query heads, and for each query head the index into that list.

    HF's ``repeat_kv`` (and TransformerLens) route query head h to key head h // (num_heads // num_kv_heads).
    """
    if num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} query heads cannot share {num_kv_heads} key heads evenly")
    n_rep = num_heads // num_kv_heads
    kv_heads = sorted({h // n_rep for h in heads})
    return kv_heads, [kv_heads.index(h // n_rep) for h in heads]


def take_heads(t: torch.Tensor, index: list[int]) -> torch.Tensor:
    """``t[:, index]``, as a view when the indices are a contiguous run (the common all-heads case)."""
    if index == list(range(index[0], index[0] + len(index))):
        return t[:, index[0] : index[0] + len(index)]
    return t[:, index]


@torch.no_grad()
def attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    kv_map: list[int],
    scaling: float,
    mask: torch.Tensor | None = None,
    softcap: float | None = None,
    position_bias: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(softcap(q kᵀ · scaling) + position_bias + mask), with optional per-head sink logits, on the CPU.

    ``query`` is [B, h, Q, D] (selected heads), ``key`` [B, g, K, D] (un-repeated), ``kv_map`` the key index of each
    query head; ``mask``/``position_bias`` broadcast to [B, h, Q, K] (position_bias already restricted to the
    selected heads); ``sinks`` is [h]. Computed in float32, returned in ``dtype``. Rows where every key is masked
    come out as zeros instead of NaN. ``scratch``: a reusable flat float32 CPU buffer for the float32 work when
    ``dtype`` is narrower (fresh large tensors cost page faults, which dominate on CPUs).
    """
    q = query.float()
    k = take_heads(key.float(), kv_map).transpose(-1, -2)
    shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[-1])
    terms = (scaling, mask, softcap, position_bias, sinks)
    if q.device.type == "cpu":
        if dtype == torch.float32 or scratch is None or scratch.numel() < math.prod(shape):
            work = torch.empty(shape)
        else:
            work = scratch[: math.prod(shape)].view(shape)
        _fill(work, q, k, *terms)
        return work if dtype == torch.float32 else work.to(dtype)
    result = torch.empty(shape, dtype=dtype)
    step = max(1, _CHUNK_ELEMENTS // max(1, shape[0] * shape[1] * shape[3]))
    for start in range(0, shape[2], step):
        rows = slice(start, start + step)
        chunk = torch.empty(shape[0], shape[1], q[:, :, rows].shape[2], shape[3], device=q.device)
        _fill(chunk, q[:, :, rows], k, scaling, _rows(mask, rows), softcap, _rows(position_bias, rows), sinks)
        result[:, :, rows].copy_(chunk)
    return result


def _fill(out, q, k, scaling, mask, softcap, position_bias, sinks) -> None:
    torch.matmul(q * scaling, k, out=out)  # scaling the small q instead of the Q x K logits saves a pass
    if softcap is not None:
        out.div_(softcap).tanh_().mul_(softcap)
    if position_bias is not None:
        out.add_(position_bias)
    if mask is not None:
        out.add_(mask)
    if sinks is None:
        # softmax in place (one fused pass, no temporary): the kernel works row by row, element-wise on its output.
        torch.ops.aten._softmax.out(out, -1, False, out=out)
    else:
        # Each head has an extra "sink" logit that takes probability mass but is not a key (GPT-OSS).
        sink = sinks.float().to(out.device).reshape(1, -1, 1, 1)
        top = torch.maximum(out.amax(dim=-1, keepdim=True), sink)
        out.sub_(top).exp_()
        out.div_(out.sum(dim=-1, keepdim=True) + (sink - top).exp())
    if mask is not None:
        dead = torch.isneginf(mask).all(dim=-1, keepdim=True)  # rows with nothing to attend to (padding)
        if dead.any():
            out.masked_fill_(dead, 0.0)


def _rows(t: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    # Masks/biases may broadcast over the query axis (size 1); only slice a real query axis.
    return t if t is None or t.shape[-2] == 1 else t[..., rows, :]
