"""Capture for transformers models through ``AttentionInterface``: sees exactly what the model's attention uses.

For each implementation a model is configured with (``sdpa``, ``eager``, ``flash_attention_2``, ...) we register a
wrapper ``tb_attention:<name>`` plus the same mask function, so the model builds the very mask it would build
anyway. The wrapper calls the original function first (the model's output is bit-identical), then, for selected
layers, recomputes the attention probabilities from the post-RoPE q/k, the real scaling, mask, softcap,
position bias and sinks it was given.
"""

from __future__ import annotations

import inspect
import re

import torch

from .configs import all_configs, switch_attention
from .record import LayerRecord
from .weights import additive_mask, attention_probs, kv_selection, take_heads

PREFIX = "tb_attention:"
_ACTIVE: list = []  # installed HFRecorders; a call is routed to the one that owns the module
_ORIGINALS: dict = {}
_DEFAULT_FN = re.compile(r"get_interface\(\s*[\w.]+\s*,\s*(\w+)\s*\)")


class HFBackend:
    """What the interface and fallback recorders share: head count, and padding from the model's 2D masks."""

    method = ""

    def __init__(self, session):
        self.session = session

    def num_heads(self) -> int | None:
        return getattr(hf_config(self.session.model), "num_attention_heads", None)

    def before(self, args, kwargs):
        return None

    def after(self, output) -> None:
        pass

    def fill_validity(self, cap, named: dict) -> None:
        """Padding from the user's 2D masks: ``attention_mask`` for the main input, ``decoder_attention_mask`` for
        a decoder's tokens; a decoder-only model's cross-attention reads ``encoder_attention_mask``."""
        main, decoder = named.get("attention_mask"), named.get("decoder_attention_mask")
        seq2seq = "encoder" in cap.streams or "decoder" in cap.streams  # names kept only for seq2seq models
        masks = {
            "decoder": (decoder, decoder),
            "cross": (decoder, main) if seq2seq else (main, named.get("encoder_attention_mask")),
        }
        for stream, recs in cap.streams.items():
            q_mask, k_mask = masks.get(stream, (main, main))
            for r in recs:
                r.query_valid = _valid(q_mask, r.weights.shape[0], r.weights.shape[2])
                r.key_valid = _valid(k_mask, r.weights.shape[0], r.weights.shape[3])


def hf_config(model: torch.nn.Module):
    """The config of the model, or of the outermost transformers model inside a wrapper."""
    from transformers import PreTrainedModel

    return next((m.config for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def _valid(mask, batch: int, length: int) -> torch.Tensor:
    if isinstance(mask, torch.Tensor) and mask.dim() == 2 and tuple(mask.shape) == (batch, length):
        return mask.detach().cpu().bool()
    return torch.ones(batch, length, dtype=torch.bool)


class HFRecorder(HFBackend):
    """Installs the wrappers on a model for one ``with`` block. ``reference=True`` stores eager's own weights."""

    method = "attention_interface"

    def __init__(self, session, reference: bool = False):
        super().__init__(session)
        self.reference = reference
        self._restore = None

    def install(self) -> None:
        flex = [c for c in all_configs(self.session.model) if c._attn_implementation_internal == "flex_attention"]
        if flex:
            # Its BlockMask cannot be turned back into the dense mask the weights need.
            raise ValueError(
                "tb_attention cannot capture flex_attention; switch for the probe with "
                "model.set_attn_implementation('sdpa') (or 'eager') and back afterwards"
            )
        wrap = (lambda current: _register("eager")) if self.reference else _register
        self._restore = switch_attention(self.session.model, wrap)
        _ACTIVE.append(self)

    def remove(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._restore is not None:
            self._restore()
            self._restore = None

    def on_call(self, original, module, query, key, mask, kwargs, result) -> None:
        where = self.session.select(module, query.shape[1])
        if where is None:
            return
        stream, layer, name, heads = where
        if self.reference:
            if result[1] is None:
                raise RuntimeError(f"{name}: the eager attention function returned no weights")
            weights = self.session.store(take_heads(result[1], heads))
            self.session.add(LayerRecord(stream, layer, name, heads, weights, None, None))
            return
        kv_heads, kv_map = kv_selection(heads, query.shape[1], key.shape[1])
        q, k = take_heads(query.detach(), heads), take_heads(key.detach(), kv_heads)
        if mask is not None and mask.dim() == 4 and mask.shape[1] > 1:
            mask = take_heads(mask, heads)
        is_causal = kwargs.get("is_causal")
        is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        # Only SDPA/flash rely on the is_causal flag; an eager function without a mask attends everywhere.
        implicit_causal = original != "eager" and bool(is_causal)
        add_mask = additive_mask(mask, q.shape[2], k.shape[2], q.device, implicit_causal, kwargs.get("sliding_window"))
        bias = kwargs.get("position_bias")
        if bias is not None:
            bias = take_heads(bias.detach(), heads) if bias.shape[1] > 1 else bias.detach()
        sinks = kwargs.get("s_aux")
        sinks = None if sinks is None else sinks.detach()[heads]
        scaling = kwargs.get("scaling")
        scaling = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
        softcap = kwargs.get("softcap")
        session = self.session
        weights = attention_probs(
            q,
            k,
            kv_map,
            scaling,
            add_mask,
            softcap,
            bias,
            sinks,
            dtype=session.cap.dtype,
            scratch=session.scratch(q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]),
        )
        extras = {
            "scaling": scaling,
            "softcap": softcap,
            "sliding_window": kwargs.get("sliding_window"),
            "sinks": None if sinks is None else sinks.float().cpu().numpy(),
            "position_bias": bias is not None,
            "implementation": original,
        }
        store, qk = session.store, session.qk
        session.add(
            LayerRecord(
                stream,
                layer,
                name,
                heads,
                store(weights, owned=True),
                None,
                None,
                queries=store(q) if qk else None,
                keys=store(k) if qk else None,
                kv_heads=kv_heads if qk else None,
                kv_map=kv_map if qk else None,
                extras=extras,
            )
        )


def _register(original: str) -> str:
    """Register (once) the wrapper and mask function for one original implementation; returns the wrapper name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    name = PREFIX + original
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _wrapper(original))
        # No mask function for implementations that have none (custom kernels): transformers then passes no mask,
        # exactly as it would for the original.
        if original in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS._global_mapping[original])
    return name


def _wrapper(original: str):
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        result = original_function(original, module)(module, query, key, value, attention_mask, *args, **kwargs)
        for recorder in _ACTIVE:
            if recorder.session.owns(module):
                recorder.on_call(original, module, query, key, attention_mask, kwargs, result)
                break
        return result

    attention.__name__ = f"tb_attention_{original}"
    return attention


def original_function(original: str, module: torch.nn.Module):
    """The function the module would call for ``original``, resolved as its own forward resolves it.

    "eager" is not in the global interface: each modeling file passes its own ``eager_attention_forward`` as the
    default, and a file may hold a local ``AttentionInterface`` with overrides, so both are read from the globals
    of the module's forward.
    """
    key = (type(module), original)
    if key not in _ORIGINALS:
        forward = inspect.unwrap(type(module).forward)
        namespace = forward.__globals__
        match = _DEFAULT_FN.search(inspect.getsource(forward))
        default = namespace.get(match.group(1) if match else "eager_attention_forward")
        if default is None:
            raise RuntimeError(f"cannot find the eager attention function of {type(module).__qualname__}")
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        interface = namespace.get("ALL_ATTENTION_FUNCTIONS", ALL_ATTENTION_FUNCTIONS)
        _ORIGINALS[key] = interface.get_interface(original, default)
    return _ORIGINALS[key]
