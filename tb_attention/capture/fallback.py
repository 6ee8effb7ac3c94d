"""Fallback for transformers models that do not dispatch through ``AttentionInterface`` (DeBERTa, BLOOM, ...).

Inside the ``with`` block the model runs eager attention with ``output_attentions=True``; the weights come from
its outputs. Queries/keys are not reachable this way, so only attention is recorded.
"""

from __future__ import annotations

import warnings

from .configs import switch_attention
from .hf import HFBackend
from .locate import wants_layer
from .record import LayerRecord
from .weights import take_heads

# Output fields holding per-layer attention, and the stream each one feeds.
_FIELDS = {
    "attentions": "self",
    "encoder_attentions": "encoder",
    "decoder_attentions": "decoder",
    "cross_attentions": "cross",
}


class FallbackRecorder(HFBackend):
    method = "output_attentions"

    def __init__(self, session, reference: bool = False):
        super().__init__(session)  # reference runs are eager + output_attentions too: nothing differs
        self._restore = None
        self._hooks = []

    def install(self) -> None:
        from transformers import PreTrainedModel

        # Hooks on the transformers model itself: a wrapper's forward may not accept output_attentions.
        target = next(m for m in self.session.model.modules() if isinstance(m, PreTrainedModel))
        self._hooks = [
            target.register_forward_pre_hook(self._request, with_kwargs=True),
            target.register_forward_hook(self._collect),
        ]
        self._restore = switch_attention(self.session.model, lambda current: "eager")
        warnings.warn(
            f"tb_attention: {type(self.session.model).__name__} does not use transformers' AttentionInterface; "
            "capturing attention via eager output_attentions (queries/keys unavailable)",
            stacklevel=3,
        )

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self._restore is not None:
            self._restore()
            self._restore = None

    def _request(self, module, args, kwargs):
        return args, {**kwargs, "output_attentions": True}

    def _collect(self, module, args, output) -> None:
        if not hasattr(output, "get"):
            raise TypeError("tb_attention: the fallback capture needs a ModelOutput; do not pass return_dict=False")
        session = self.session
        for field, stream in _FIELDS.items():
            layers = output.get(field) or ()
            for layer, weights in enumerate(layers):
                if weights is None or not wants_layer(session.layers, layer, len(layers)):
                    continue
                heads = session.heads if session.heads is not None else list(range(weights.shape[1]))
                if max(heads) >= weights.shape[1]:
                    raise ValueError(f"head {max(heads)} out of range: {field} has {weights.shape[1]} heads")
                stored = session.store(take_heads(weights, heads))
                session.add(LayerRecord(stream, layer, f"{field}[{layer}]", heads, stored, None, None))
