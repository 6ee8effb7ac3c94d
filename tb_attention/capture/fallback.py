"""Fallback for transformers models that do not dispatch through ``AttentionInterface`` (DeBERTa, BLOOM, ...).

The user's forward pass runs untouched (its outputs are bit-identical); afterwards, within the same ``with`` block,
``replay.Replayer`` runs the same input again with eager attention and ``output_attentions=True``, and the weights
come from that output. Queries/keys are not reachable this way, so only attention is recorded.
"""

from __future__ import annotations

import re
import warnings

import torch

from .hf import HFBackend
from .locate import wants_layer
from .record import LayerRecord
from .replay import Replayer
from .weights import take_heads

# Output fields holding per-layer attention, and the stream each one feeds.
_FIELDS = {
    "attentions": "self",
    "encoder_attentions": "encoder",
    "decoder_attentions": "decoder",
    "cross_attentions": "cross",
}
_TOWER_OUTPUT = re.compile(r"^(\w+?)_(model_)?outputs?$")  # CLIP-style nested outputs: text_model_output, ...


class NoAttentionError(ValueError):
    """The model has no attention weights to give (an RNN/state-space model, a convolutional network)."""


class FallbackRecorder(HFBackend):
    method = "output_attentions"

    def __init__(self, session, reference: bool = False):
        super().__init__(session)  # reference runs are eager + output_attentions too: nothing differs
        self.replayer = Replayer(session.model)

    def install(self) -> None:
        self.replayer.install()
        warnings.warn(
            f"tb_attention: {type(self.session.model).__name__} does not use transformers' AttentionInterface; "
            "capturing attention from a second, eager output_attentions pass (queries/keys unavailable)",
            stacklevel=3,
        )

    def remove(self) -> None:
        self.replayer.remove()

    def after(self, output) -> None:
        output = self.replayer.replay()
        if output is None:
            return
        if not hasattr(output, "get"):
            raise TypeError("tb_attention: the fallback capture needs a ModelOutput; do not pass return_dict=False")
        fields = attention_fields(output)
        if not fields:
            empty = any(k in _FIELDS and isinstance(v, (list, tuple)) and v for k, v in output.items())
            raise NoAttentionError(
                f"tb_attention: {type(self.replayer.target).__name__} has no attention to capture: with "
                "output_attentions=True it returns no [batch, heads, query, key] attention weights"
                + (
                    " (its attention fields are empty: its attention classes were chosen when it was built; "
                    "build it with attn_implementation='eager' to capture it)"
                    if empty
                    else ""
                )
            )
        session = self.session
        for stream, layers in fields.items():
            for layer, weights in enumerate(layers):
                if not wants_layer(session.layers, layer, len(layers)):
                    continue
                heads = session.heads if session.heads is not None else list(range(weights.shape[1]))
                if max(heads) >= weights.shape[1]:
                    raise ValueError(f"head {max(heads)} out of range: {stream} has {weights.shape[1]} heads")
                stored = session.store(take_heads(weights, heads))
                session.add(LayerRecord(stream, layer, f"{stream}[{layer}]", heads, stored, None, None))


def attention_fields(output, prefix: str = "") -> dict[str, list[torch.Tensor]]:
    """Stream name -> per-layer [batch, heads, query, key] weights, from a model output (nested tower outputs:
    ``text_model_output.attentions`` feeds stream "text")."""
    found: dict[str, list[torch.Tensor]] = {}
    for key, value in output.items():
        if key in _FIELDS and isinstance(value, (list, tuple)):
            layers = [t for t in _flat(value) if isinstance(t, torch.Tensor) and t.dim() == 4]
            if layers:
                role = _FIELDS[key]
                name = role if not prefix else prefix if role == "self" else f"{prefix}_{role}"
                found[name] = layers
        elif hasattr(value, "items") and (m := _TOWER_OUTPUT.match(key)):
            found.update(attention_fields(value, m.group(1)))
    return found


def _flat(value):
    """Layers in call order; hierarchical models (PVT-v2) nest one tuple per stage."""
    for v in value:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v
