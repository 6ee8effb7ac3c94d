"""The mask an attention call used, split from additive position terms and described compactly.

Whatever a backend receives (a 4D bool mask for SDPA, a 4D additive float mask for eager, a 2D padding mask for
flash attention, or None with ``is_causal``) becomes a bool ``allowed`` mask plus, when a float mask carried finite
non-zero values (relative-position scores passed as the mask), an additive ``bias``. After the forward pass, when the
padding is known, ``classify`` names the mask: ``none`` (every valid key), ``causal``, ``sliding`` (causal within a
window), ``chunked`` (causal within chunks: Llama 4), ``band`` (bidirectional within a window: EmbeddingGemma),
``prefix`` (bidirectional over a per-row prefix, causal after: PaliGemma's prefix-LM) or ``tensor`` (kept as is). ``allowed_mask`` rebuilds the mask from that description, which is what a reader that has only the stored
q/k and these parameters would do.
"""

from __future__ import annotations

import torch

KINDS = ("none", "causal", "sliding", "chunked", "band", "prefix", "tensor")


def split_mask(
    mask: torch.Tensor | None,
    q_len: int,
    k_len: int,
    device: torch.device,
    implicit_causal: bool,
    sliding_window: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(allowed bool [B|1, 1|h, Q, K] or None = everything, additive float32 bias or None) of a received mask."""
    if mask is not None and mask.dim() == 4:
        if mask.dtype == torch.bool:
            return mask, None
        # Eager masks use finfo(dtype).min for "masked"; anything else finite is a term added to the logits.
        allowed = mask > torch.finfo(mask.dtype).min / 2
        bias = mask.float().masked_fill(~allowed, 0.0)
        return allowed, (bias if bool(bias.any()) else None)
    allowed = None
    if implicit_causal and q_len > 1:
        q_idx = torch.arange(q_len, device=device)[:, None]
        k_idx = torch.arange(k_len, device=device)[None, :]
        allowed = k_idx <= q_idx  # SDPA's is_causal: upper-left aligned
        if sliding_window is not None:
            allowed = allowed & (k_idx > q_idx - sliding_window)
        allowed = allowed[None, None]
    if mask is not None:  # 2D padding mask [batch, key] (flash attention)
        padding = mask.bool()[:, None, None, -k_len:]
        allowed = padding if allowed is None else allowed & padding
    return allowed, None


def to_additive(allowed: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor | None:
    """The float32 mask the weights are computed with: bias where allowed, -inf elsewhere."""
    if allowed is None:
        return None if bias is None else bias.float()
    out = torch.zeros(allowed.shape, device=allowed.device) if bias is None else bias.float().clone()
    return out.masked_fill_(~allowed, float("-inf"))


def _grid(q_len: int, k_len: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(q_len)[:, None] + offset, torch.arange(k_len)[None, :]


def _pattern(kind: str, params: dict, q_len: int, k_len: int, batch: int) -> torch.Tensor:
    """[batch, Q, K] bool of a mask kind, before padding."""
    q, k = _grid(q_len, k_len, params.get("offset", 0))
    if kind == "none":
        return torch.ones(batch, q_len, k_len, dtype=torch.bool)
    causal = k <= q
    if kind == "causal":
        return causal.expand(batch, q_len, k_len)
    if kind == "sliding":
        return (causal & (k > q - params["window"])).expand(batch, q_len, k_len)
    if kind == "chunked":
        return (causal & (k // params["chunk"] == q // params["chunk"])).expand(batch, q_len, k_len)
    if kind == "band":
        return ((q - k).abs() <= params["window"]).expand(batch, q_len, k_len)
    if kind == "prefix":
        prefix = torch.tensor(params["prefix"])[:, None, None]
        return causal[None] | (k[None] < prefix)
    raise ValueError(f"unknown mask kind {kind!r}")


def allowed_mask(kind: str, params: dict, key_valid: torch.Tensor, q_len: int, k_len: int) -> torch.Tensor:
    """[batch, 1, Q, K] bool rebuilt from a mask description and the key padding (True = attend)."""
    return (_pattern(kind, params, q_len, k_len, key_valid.shape[0]) & key_valid[:, None, :])[:, None]


def classify(
    allowed: torch.Tensor | None,
    query_valid: torch.Tensor,
    key_valid: torch.Tensor,
    window: int | None = None,
) -> tuple[str, dict]:
    """The simplest description that reproduces ``allowed`` on every non-padding query row, else "tensor"."""
    batch, q_len = query_valid.shape
    k_len = key_valid.shape[1]
    if allowed is None:
        actual = key_valid[:, None, :].expand(batch, q_len, k_len)
    elif allowed.shape[1] != 1 and not bool((allowed == allowed[:, :1]).all()):
        return "tensor", {}  # a different mask per head
    else:
        actual = allowed[:, 0].cpu().expand(batch, q_len, k_len)
    rows = query_valid[:, :, None]
    offset = k_len - q_len  # bottom-right aligned, as transformers' masks are with a cache
    candidates = [("none", {}), ("causal", {"offset": offset})]
    for w in dict.fromkeys(x for x in (window, _window(actual, rows, offset)) if isinstance(x, int) and x > 0):
        candidates.append(("sliding", {"offset": offset, "window": int(w)}))
    chunk = _chunk(actual, rows, offset)
    if chunk:
        candidates.append(("chunked", {"offset": offset, "chunk": chunk}))
    band = _window(actual, rows, offset, absolute=True)
    if band is not None:
        candidates.append(("band", {"offset": offset, "window": band - 1}))
    candidates.append(("prefix", {"offset": offset, "prefix": _prefix(actual, query_valid)}))
    for kind, params in candidates:
        expected = _pattern(kind, params, q_len, k_len, batch) & key_valid[:, None, :]
        if not bool(((expected ^ actual) & rows).any()):
            return kind, params
    return "tensor", {}


def _window(actual: torch.Tensor, rows: torch.Tensor, offset: int, absolute: bool = False) -> int | None:
    """The widest query-key distance attended, plus one: the window, if the mask is a sliding one."""
    q, k = _grid(actual.shape[1], actual.shape[2], offset)
    distance = ((q - k).abs() if absolute else (q - k)).expand_as(actual)
    seen = actual & rows
    if not bool(seen.any()):
        return None
    return int(distance[seen].max()) + 1


def _chunk(actual: torch.Tensor, rows: torch.Tensor, offset: int) -> int | None:
    """The first query position (after 0) that sees no earlier key: the chunk size, if the mask is chunked."""
    first = actual[0].float().argmax(-1)  # first allowed key per query row, of the first batch row
    q = torch.arange(actual.shape[1]) + offset
    starts = [int(p) for p, f, r in zip(q, first, rows[0, :, 0]) if p > 0 and bool(r) and int(f) == int(p)]
    return starts[0] if starts else None


def _prefix(actual: torch.Tensor, query_valid: torch.Tensor) -> list[int]:
    """Per row: keys attended by the first valid query (a prefix-LM's bidirectional part)."""
    out = []
    for b in range(actual.shape[0]):
        valid = query_valid[b].nonzero().flatten()
        seen = actual[b, int(valid[0])].nonzero().flatten() if len(valid) else torch.empty(0)
        out.append(int(seen.max()) + 1 if len(seen) else 0)
    return out
