"""Attention modules of an interface-based model that never call the interface (BigBird-Pegasus's encoder).

transformers lists, per model class, the modules its ``output_attentions`` collects from (``_can_record_outputs``).
The tracker watches those modules during the user's forward pass: one that returns without a single
``AttentionInterface`` call inside it computes attention some other way, and its weights are taken from a second,
eager pass (``replay.Replayer``), where a forward hook reads them from the module's output, as transformers does.
Such layers have no queries/keys.
"""

from __future__ import annotations

import torch

from .record import LayerRecord
from .replay import Replayer
from .weights import take_heads


def attention_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, int]]:
    """(module, index of the weights in its output) for every module transformers records attentions from."""
    from transformers import PreTrainedModel

    found: dict[int, tuple[torch.nn.Module, int]] = {}
    for owner in (m for m in model.modules() if isinstance(m, PreTrainedModel)):
        specs = [
            (key, spec)
            for key, value in (getattr(type(owner), "_can_record_outputs", None) or {}).items()
            if "attention" in key
            for spec in (value if isinstance(value, list) else [value])
        ]
        for name, module in owner.named_modules():
            for _, spec in specs:
                target, index, layer_name, class_name = _spec(spec)
                if target is not None and not isinstance(module, target):
                    continue
                if target is None and not (class_name and name.endswith(class_name)):
                    continue
                if layer_name and "." + layer_name.strip(".") + "." not in "." + name + ".":
                    continue
                found.setdefault(id(module), (module, index))
    return list(found.values())


def _spec(spec):
    if isinstance(spec, type):
        return spec, 1, None, None
    if isinstance(spec, str):
        return None, 1, None, spec
    return spec.target_class, spec.index, spec.layer_name, spec.class_name


class GapTracker:
    def __init__(self, session):
        self.session = session
        self.modules = attention_modules(session.model)
        self.replayer = Replayer(session.model) if self.modules else None
        self.calls = 0
        self.missing: dict[int, tuple[torch.nn.Module, int]] = {}
        self._entry: dict[int, list[int]] = {}
        self._hooks: list = []

    def install(self) -> None:
        if self.replayer is None:
            return
        self.replayer.install()
        for module, index in self.modules:
            self._hooks.append(module.register_forward_pre_hook(self._enter))
            self._hooks.append(module.register_forward_hook(self._leave(index)))

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self.replayer is not None:
            self.replayer.remove()

    def reset(self) -> None:
        self.calls = 0
        self.missing = {}
        self._entry = {}

    def saw_call(self) -> None:
        self.calls += 1

    def _enter(self, module, args):
        if self.replayer.running:
            return
        self._entry.setdefault(id(module), []).append(self.calls)

    def _leave(self, index: int):
        def hook(module, args, output):
            if self.replayer.running:
                return
            entered = self._entry.get(id(module))
            if entered and entered.pop() == self.calls and self.session.owns(module):
                self.missing.setdefault(id(module), (module, index))

        return hook

    def fill(self, recorder) -> None:
        """Run the eager pass and record the weights of the modules that computed attention on their own."""
        if not self.missing:
            if self.replayer is not None:
                self.replayer.call = None
            return
        hooks = [m.register_forward_hook(self._collect(i)) for m, i in self.missing.values()]
        recorder.replaying = True
        try:
            self.replayer.replay()
        finally:
            recorder.replaying = False
            for hook in hooks:
                hook.remove()

    def _collect(self, index: int):
        def hook(module, args, output):
            weights = output[index] if isinstance(output, (tuple, list)) and len(output) > index else None
            if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
                return
            where = self.session.select(module, weights.shape[1])
            if where is None:
                return
            stream_key, layer, name, heads = where
            stored = self.session.store(take_heads(weights, heads))
            self.session.add(LayerRecord("", layer, name, heads, stored, None, None), stream_key)

        return hook
