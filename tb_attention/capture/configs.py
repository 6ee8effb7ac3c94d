"""Temporarily switching ``_attn_implementation`` on every config of a transformers model, restored afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def all_configs(model: torch.nn.Module) -> list:
    """Every config reachable from the model: module configs and their nested sub-configs, each once."""
    found: dict[int, object] = {}
    pending = [getattr(m, "config", None) for m in model.modules()]
    pending = [c for c in pending if hasattr(c, "_attn_implementation_internal")]
    while pending:
        config = pending.pop()
        if id(config) in found:
            continue
        found[id(config)] = config
        pending.extend(_sub_configs(config))
    return list(found.values())


def _sub_configs(config) -> Iterator:
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if hasattr(sub, "_attn_implementation_internal"):
            yield sub


def switch_attention(model: torch.nn.Module, rename: Callable[[str], str]) -> Callable[[], None]:
    """Set each config's implementation to ``rename(current)``; returns the function that restores them.

    Configs without an implementation (None) are left alone: transformers treats them as "no mask, default
    function", and renaming would change that behaviour.
    """
    saved = [(c, c._attn_implementation_internal) for c in all_configs(model)]
    for config, current in saved:
        if isinstance(current, str):
            config._attn_implementation_internal = rename(current)

    def restore() -> None:
        for config, current in saved:
            config._attn_implementation_internal = current

    return restore


def supports_interface(model: torch.nn.Module) -> bool:
    """Whether every transformers (sub)model dispatches attention through ``AttentionInterface``."""
    from transformers import PreTrainedModel

    return all(m._can_set_attn_implementation() for m in model.modules() if isinstance(m, PreTrainedModel))
