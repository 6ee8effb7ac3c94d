"""Capture for transformers models through ``AttentionInterface``: sees exactly what the model's attention uses.

While a capture block is open, ``AttentionInterface.get_interface`` and ``AttentionInterface[...]`` hand out a
wrapper around the very function the module would have called (``sdpa``, its modeling file's own eager function, a
flash kernel, a local override). Nothing is renamed, so every ``_attn_implementation == "sdpa"`` branch and every mask
function behaves as without the capture, and the wrapper calls that function first: the outputs are bit-identical.
Then, for selected layers, it recomputes the attention probabilities from the post-RoPE q/k, the real scaling,
mask, softcap, position bias and sinks it was given. Attention modules that never reach the interface (a model mixing
both kinds, e.g. BigBird-Pegasus's encoder) are filled in by a second, eager pass (``fallback.eager_pass``).
"""

from __future__ import annotations

import torch

from .configs import all_configs, switch_attention
from .gaps import GapTracker
from .masks import split_mask
from .record import LayerRecord
from .weights import kv_selection, take_heads

_ACTIVE: list = []  # installed HFRecorders; a call is routed to the one that owns the module
_PATCH: dict = {"count": 0, "saved": None}
_WRAPPERS: dict = {}  # (function, implementation, eager default) -> its wrapper, while the patch is installed
_SINKS_IN_SOFTMAX: dict = {}  # attention module class -> whether its eager weights include the sink logit


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
        """Padding from the user's 2D masks: ``attention_mask`` for the main (text) input, ``decoder_attention_mask``
        for a decoder's tokens; a decoder-only model's cross-attention reads ``encoder_attention_mask``. Towers of
        other modalities (vision, audio) have no padding mask."""
        main, decoder = named.get("attention_mask"), named.get("decoder_attention_mask")
        seq2seq = "encoder" in cap.streams or "decoder" in cap.streams  # names kept only for seq2seq models
        masks = {
            "decoder": (decoder, decoder),
            "cross": (decoder, main) if seq2seq else (main, named.get("encoder_attention_mask")),
        }
        for stream, recs in cap.streams.items():
            text = stream in ("self", "encoder", "text") or stream.startswith("text_") or stream in masks
            q_mask, k_mask = masks.get(stream, (main, main) if text else (None, None))
            for r in recs:
                batch, _, q_len, k_len = r.shape
                r.query_valid = _valid(q_mask, batch, q_len)
                r.key_valid = _valid(k_mask, batch, k_len)


def hf_config(model: torch.nn.Module):
    """The config of the model, or of the outermost transformers model inside a wrapper."""
    from transformers import PreTrainedModel

    return next((m.config for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def _valid(mask, batch: int, length: int) -> torch.Tensor:
    if isinstance(mask, torch.Tensor) and mask.dim() == 2 and tuple(mask.shape) == (batch, length):
        return mask.detach().cpu().bool()
    return torch.ones(batch, length, dtype=torch.bool)


class HFRecorder(HFBackend):
    """Installs the wrappers for one ``with`` block. ``reference=True`` runs eager and stores eager's own weights."""

    method = "attention_interface"

    def __init__(self, session, reference: bool = False):
        super().__init__(session)
        self.reference = reference
        self._restore = None
        self._masks: dict = {}  # per forward pass: one CPU copy of each mask object the layers share
        self.replaying = False  # True during the gap-filling eager pass: its calls are not recorded
        self._last = None  # (module, query, key) of the last call in this forward pass
        self.gaps = GapTracker(session)

    def install(self) -> None:
        flex = [c for c in all_configs(self.session.model) if c._attn_implementation_internal == "flex_attention"]
        if flex:
            # Its BlockMask cannot be turned back into the dense mask the weights need.
            raise ValueError(
                "tb_attention cannot capture flex_attention; switch for the probe with "
                "model.set_attn_implementation('sdpa') (or 'eager') and back afterwards"
            )
        if self.reference:
            self._restore = switch_attention(self.session.model, lambda current: "eager")
        _install_patch()
        _ACTIVE.append(self)
        if self.gaps is not None:
            self.gaps.install()

    def remove(self) -> None:
        if self.gaps is not None:
            self.gaps.remove()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
            _remove_patch()
        if self._restore is not None:
            self._restore()
            self._restore = None
        self._masks = {}

    def before(self, args, kwargs):
        self._masks, self._last = {}, None
        if self.gaps is not None:
            self.gaps.reset()
        return None

    def after(self, output) -> None:
        self._masks, self._last = {}, None
        if self.gaps is not None:
            self.gaps.fill(self)

    def on_call(self, implementation, module, query, key, value, mask, kwargs, result, eager=None) -> None:
        if self.gaps is not None:
            self.gaps.saw_call()
        if self.replaying:
            return
        if self._last is not None and self._last[0] is module and self._last[1] is query and self._last[2] is key:
            return  # the same attention again on other values (DiffLlama's two halves): the same weights
        self._last = (module, query, key)
        where = self.session.select(module, query.shape[1])
        if where is None:
            return
        stream_key, layer, name, heads = where
        if self.reference:
            if result[1] is None:
                raise RuntimeError(f"{name}: the eager attention function returned no weights")
            weights = self.session.store(take_heads(result[1], heads))
            self.session.add(LayerRecord("", layer, name, heads, weights, None, None), stream_key)
            return
        kv_heads, kv_map = kv_selection(heads, query.shape[1], key.shape[1])
        q, k = take_heads(query.detach(), heads), take_heads(key.detach(), kv_heads)
        if mask is not None and mask.dim() == 4 and mask.shape[1] > 1:
            mask = take_heads(mask, heads)
        is_causal = kwargs.get("is_causal")
        is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        # Only SDPA/flash rely on the is_causal flag; an eager function without a mask attends everywhere.
        implicit_causal = implementation != "eager" and bool(is_causal)
        window = kwargs.get("sliding_window")
        allowed, mask_bias = split_mask(mask, q.shape[2], k.shape[2], q.device, implicit_causal, window)
        bias = kwargs.get("position_bias")
        if bias is not None:
            bias = take_heads(bias.detach(), heads) if bias.shape[1] > 1 else bias.detach()
        sinks = kwargs.get("s_aux")
        convention = None
        if sinks is not None:
            # GPT-OSS's sinks are a softmax logit (its weights sum below 1); Granite-SWA's eager function reports the
            # softmax without them and scales the output by the sink instead: record what the model reports.
            convention = "softmax" if _sinks_in_softmax(module, eager, query, key, value, sinks) else "output"
            sinks = sinks.detach()[heads]
        scaling = kwargs.get("scaling")
        scaling = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
        softcap = kwargs.get("softcap")
        session = self.session
        in_softmax = sinks if convention == "softmax" else None
        weights, rows, check = session.attention(q, k, kv_map, scaling, allowed, mask_bias, softcap, bias, in_softmax)
        extras = {
            "scaling": scaling,
            "softcap": softcap,
            "sliding_window": window,
            "sinks": None if convention != "softmax" else sinks.float().cpu().numpy(),
            "output_sinks": None if convention != "output" else sinks.float().cpu().numpy(),
            "implementation": implementation,
        }
        store, qk = session.store, session.qk
        weights = None if weights is None else store(weights, owned=True)
        record = LayerRecord("", layer, name, heads, weights, None, None, extras=extras)
        record.check_rows, record.check_weights = rows, check
        if qk:
            record.queries, record.keys, record.kv_heads, record.kv_map = store(q), store(k), kv_heads, kv_map
            record.mask_kind = "pending"  # named by classify() once the padding is known
            record.mask = self._cpu_mask(mask, allowed, q.shape[2], k.shape[2], implicit_causal, window)
            total = _sum(mask_bias, bias)
            record.position_bias = None if total is None else store(total)
        session.add(record, stream_key)

    def _cpu_mask(self, received, allowed, q_len, k_len, implicit_causal, window):
        """The allowed mask on the CPU, copied once per mask object per forward pass (the layers share them)."""
        if allowed is None:
            return None
        key = (id(received), q_len, k_len, implicit_causal, window)
        hit = self._masks.get(key)
        if hit is None or hit[0] is not received:
            hit = self._masks[key] = (received, allowed.detach().to("cpu", copy=True))
        return hit[1]


def _sum(a, b):
    if a is None:
        return b
    return a if b is None else a + b


# -- the patch on AttentionInterface ------------------------------------------------------------------------------


def _install_patch() -> None:
    from transformers.modeling_utils import AttentionInterface

    if _PATCH["count"] == 0:
        get_interface = AttentionInterface.get_interface
        own_getitem = AttentionInterface.__dict__.get("__getitem__")
        getitem = AttentionInterface.__getitem__

        def patched_get_interface(self, attn_implementation, default):
            function = get_interface(self, attn_implementation, default)
            return _wrapped(function, attn_implementation or "eager", default)

        def patched_getitem(self, key):
            return _wrapped(getitem(self, key), key)

        AttentionInterface.get_interface = patched_get_interface
        AttentionInterface.__getitem__ = patched_getitem
        _PATCH["saved"] = (get_interface, own_getitem)
    _PATCH["count"] += 1


def _remove_patch() -> None:
    from transformers.modeling_utils import AttentionInterface

    _PATCH["count"] -= 1
    if _PATCH["count"] == 0:
        get_interface, own_getitem = _PATCH["saved"]
        AttentionInterface.get_interface = get_interface
        if own_getitem is None:
            del AttentionInterface.__getitem__
        else:
            AttentionInterface.__getitem__ = own_getitem
        _PATCH["saved"] = None
        _WRAPPERS.clear()


def _wrapped(function, implementation: str, eager=None):
    if getattr(function, "_tb_attention", False) or not callable(function):
        return function
    implementation = "eager" if implementation.endswith("eager") else implementation
    found = _WRAPPERS.get((function, implementation, eager))
    if found is None:

        def attention(module, query, key, value, attention_mask, *args, **kwargs):
            result = function(module, query, key, value, attention_mask, *args, **kwargs)
            for recorder in _ACTIVE:
                if recorder.session.owns(module):
                    recorder.on_call(implementation, module, query, key, value, attention_mask, kwargs, result, eager)
                    break
            return result

        attention._tb_attention = True
        attention.__name__ = getattr(function, "__name__", "attention")
        found = _WRAPPERS[(function, implementation, eager)] = attention
    return found


@torch.no_grad()
def _sinks_in_softmax(module, eager, query, key, value, sinks) -> bool:
    """Whether the module's eager function counts the sink logits in its weights: asked once per module class, on
    one zero query and one key (logit 0): the weight is 1 / (1 + e^sink) if the sink takes part, else 1."""
    cls = type(module)
    if cls not in _SINKS_IN_SOFTMAX:
        found = True
        if eager is not None:
            q, k, v = torch.zeros_like(query[:1, :, :1]), key[:1, :, :1], value[:1, :, :1]
            _, w = eager(module, q, k, v, None, scaling=1.0, dropout=0.0, s_aux=sinks)
            if w is not None:
                w = w.float().reshape(-1).cpu()
                with_sink = torch.sigmoid(-sinks.detach().float().reshape(-1).cpu())
                if w.shape == with_sink.shape:
                    found = bool((w - with_sink).abs().max() <= (w - 1).abs().max())
        _SINKS_IN_SOFTMAX[cls] = found
    return _SINKS_IN_SOFTMAX[cls]
