"""Capture for plain PyTorch: every ``nn.MultiheadAttention`` (so ``nn.Transformer*`` layers too).

A forward pre-hook sees the exact inputs and masks of each call; q/k come from the module's own projection
weights, so the module's forward is untouched. ``nn.TransformerEncoderLayer`` is observed at the layer instead:
its inference fast path computes attention without calling the MHA module (on nested tensors when there is
padding), and any hook on the layer or its children would switch that path off and change the numerics, so its
``forward`` is wrapped for the block (an instance attribute, removed on exit).
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

from .record import LayerRecord
from .weights import take_heads

_SIGNATURE = inspect.signature(torch.nn.MultiheadAttention.forward)
_LAYER_SIGNATURE = inspect.signature(torch.nn.TransformerEncoderLayer.forward)


class MHARecorder:
    method = "torch_mha"

    def __init__(self, session, reference: bool = False):
        self.session = session
        self.reference = reference
        self.modules = [m for m in session.model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
        if not self.modules:
            raise ValueError(
                f"{type(session.model).__name__} is neither a transformers model nor contains "
                "torch.nn.MultiheadAttention: nothing to capture"
            )
        for m in self.modules:
            if m.bias_k is not None or m.add_zero_attn:
                raise ValueError("nn.MultiheadAttention with add_bias_kv or add_zero_attn is not supported")
        self.layers = [m for m in session.model.modules() if isinstance(m, torch.nn.TransformerEncoderLayer)]
        self._via_layer = {id(layer.self_attn) for layer in self.layers}
        self._hooks = []
        self._wrapped: dict = {}

    def num_heads(self) -> int | None:
        counts = {m.num_heads for m in self.modules}
        return counts.pop() if len(counts) == 1 else None

    def install(self) -> None:
        self._hooks = [
            m.register_forward_pre_hook(self._on_mha, with_kwargs=True)
            for m in self.modules
            if id(m) not in self._via_layer
        ]
        for layer in self.layers:
            self._wrapped[layer] = layer.__dict__.get("forward")
            layer.forward = self._wrap(layer, layer.forward)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for layer, previous in self._wrapped.items():
            del layer.forward
            if previous is not None:
                layer.forward = previous
        self._wrapped = {}

    def _wrap(self, layer, forward):
        @functools.wraps(forward)
        def observed(*args, **kwargs):
            self._on_layer(layer, args, kwargs)
            return forward(*args, **kwargs)

        return observed

    def before(self, args, kwargs):
        return None

    def after(self, output) -> None:
        pass

    def _on_mha(self, module, args, kwargs) -> None:
        self._record(module, _bind(_SIGNATURE, module, args, kwargs))

    def _on_layer(self, layer, args, kwargs) -> None:
        # What TransformerEncoderLayer._sa_block would pass to self_attn, rebuilt from the layer's own inputs.
        a = _bind(_LAYER_SIGNATURE, layer, args, kwargs)
        src, padding = a["src"], a["src_key_padding_mask"]
        if src.is_nested:
            lengths = torch.tensor([t.shape[0] for t in src.unbind()], device=src.device)
            src = src.to_padded_tensor(0.0)
            padding = torch.arange(src.shape[1], device=src.device)[None] >= lengths[:, None]
        with torch.no_grad():
            x = layer.norm1(src) if layer.norm_first else src
        mha = {
            "query": x,
            "key": x,
            "value": x,
            "key_padding_mask": padding,
            "attn_mask": a["src_mask"],
            "is_causal": a["is_causal"],
        }
        self._record(layer.self_attn, mha)

    def _record(self, module, a: dict) -> None:
        where = self.session.select(module, module.num_heads, cross=a["query"] is not a["key"])
        if where is None:
            return
        key, layer, name, heads = where
        with torch.no_grad():
            record = self._reference(module, a, heads) if self.reference else self._recompute(module, a, heads)
        record.layer, record.module_name = layer, name
        self.session.add(record, key)

    def _recompute(self, module, a, heads) -> LayerRecord:
        query, key = _batched(module, a["query"]), _batched(module, a["key"])
        q, k = _project(module, query, key)
        q, k = take_heads(q, heads), take_heads(k, heads)
        mask = _mask(a["attn_mask"], a["key_padding_mask"], q.shape[0], module.num_heads, heads, q.shape[2], k.shape[2])
        scaling = module.head_dim**-0.5
        session = self.session
        weights, rows, check = session.attention(q, k, list(range(len(heads))), scaling, mask_bias=mask)
        store, qk = session.store, session.qk
        key_valid = _key_valid(a["key_padding_mask"], k.shape[0], k.shape[2])
        record = LayerRecord(
            "",
            0,
            "",
            heads,
            None if weights is None else store(weights, owned=True),
            None,
            key_valid,
            queries=store(q) if qk else None,
            keys=store(k) if qk else None,
            kv_heads=heads if qk else None,
            kv_map=list(range(len(heads))) if qk else None,
            extras={"scaling": scaling, "self_attention": a["query"] is a["key"]},
            check_rows=rows,
            check_weights=check,
        )
        if qk:  # recompute parameters: float masks may carry finite additive terms besides -inf
            allowed = None if mask is None else ~torch.isneginf(mask)
            bias = None if mask is None else mask.masked_fill(~allowed, 0.0)
            record.mask_kind, record.mask = "pending", None if allowed is None else allowed.cpu()
            record.position_bias = store(bias) if bias is not None and bool(bias.any()) else None
        return record

    def _reference(self, module, a, heads) -> LayerRecord:
        # module.forward (not module(...)) so that our own hook does not fire again.
        _, weights = module.forward(
            a["query"],
            a["key"],
            a["value"],
            key_padding_mask=a["key_padding_mask"],
            need_weights=True,
            attn_mask=a["attn_mask"],
            average_attn_weights=False,
            is_causal=a["is_causal"],
        )
        weights = weights if weights.dim() == 4 else weights[None]
        valid = _key_valid(a["key_padding_mask"], weights.shape[0], weights.shape[3])
        return LayerRecord(
            "",
            0,
            "",
            heads,
            self.session.store(take_heads(weights, heads)),
            None,
            valid,
            extras={"self_attention": a["query"] is a["key"]},
        )

    def fill_validity(self, cap, named: dict) -> None:
        # Self-attention queries are its keys; cross-attention queries are the tokens of the self-attention in the
        # same layer (nn.TransformerDecoderLayer's self_attn next to its multihead_attn).
        own = {
            _parent(r.module_name): r.key_valid
            for recs in cap.streams.values()
            for r in recs
            if r.extras.get("self_attention")
        }
        for recs in cap.streams.values():
            for r in recs:
                if r.extras.get("self_attention"):
                    r.query_valid = r.key_valid
                    continue
                every = torch.ones(r.shape[0], r.shape[2], dtype=torch.bool)
                mine = own.get(_parent(r.module_name))
                r.query_valid = mine if mine is not None and mine.shape == every.shape else every


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _bind(signature, module, args, kwargs) -> dict:
    call = signature.bind(module, *args, **kwargs)
    call.apply_defaults()
    return call.arguments


def _batched(module, x: torch.Tensor) -> torch.Tensor:
    """[batch, len, embed] whatever the module's layout (batch_first or not, unbatched)."""
    if x.dim() == 2:
        return x[None]
    return x if module.batch_first else x.transpose(0, 1)


def _project(module, query, key) -> tuple[torch.Tensor, torch.Tensor]:
    e = module.embed_dim
    if module._qkv_same_embed_dim:
        wq, wk = module.in_proj_weight[:e], module.in_proj_weight[e : 2 * e]
    else:
        wq, wk = module.q_proj_weight, module.k_proj_weight
    bias = module.in_proj_bias
    bq, bk = (None, None) if bias is None else (bias[:e], bias[e : 2 * e])
    heads = lambda x: x.unflatten(-1, (module.num_heads, module.head_dim)).transpose(1, 2)  # noqa: E731
    return heads(F.linear(query, wq, bq)), heads(F.linear(key, wk, bk))


def _additive(mask: torch.Tensor) -> torch.Tensor:
    # PyTorch's bool masks are True where attention is *not* allowed; float masks are added to the logits.
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(mask, float("-inf"))
    return mask.float()


def _mask(attn_mask, key_padding_mask, batch, num_heads, heads, q_len, k_len) -> torch.Tensor | None:
    total = None
    if attn_mask is not None:
        m = _additive(attn_mask)
        m = take_heads(m.view(batch, num_heads, q_len, k_len), heads) if m.dim() == 3 else m.view(1, 1, q_len, k_len)
        total = m
    if key_padding_mask is not None:
        p = _additive(key_padding_mask).view(batch, 1, 1, k_len)
        total = p if total is None else total + p
    return total


def _key_valid(key_padding_mask, batch, k_len) -> torch.Tensor:
    if key_padding_mask is None:
        return torch.ones(batch, k_len, dtype=torch.bool)
    pad = key_padding_mask if key_padding_mask.dtype == torch.bool else torch.isneginf(key_padding_mask)
    return ~pad.detach().cpu().view(batch, k_len)
