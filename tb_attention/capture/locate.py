"""Which stream and layer an attention module belongs to, from its position in the module tree.

Module names are unstable across versions (ViT's ``attention.attention.query`` became ``attention.q_proj``), but
every transformer keeps its blocks in an ``nn.ModuleList``: the outermost list containing a module is its stack,
the index into it is the layer.
"""

from __future__ import annotations

import operator
import re

import torch

_CROSS_NAME = re.compile(r"cross|encdec|encoder_attn", re.IGNORECASE)


_LISTS = (torch.nn.ModuleList, torch.nn.Sequential)


class Locator:
    def __init__(self, model: torch.nn.Module):
        modules = list(model.named_modules())  # one walk: this runs at every capture
        self.names = {id(m): name for name, m in modules}
        lists = {name: len(m) for name, m in modules if isinstance(m, _LISTS) and len(m)}
        # A list nested in a layer of another list (T5Block.layer) is part of that layer, not a stack of its own.
        self.stacks = {name: n for name, n in lists.items() if not any(name.startswith(p + ".") for p in lists)}

    def name(self, module: torch.nn.Module) -> str:
        return self.names.get(id(module), type(module).__name__)

    def locate(self, name: str, cross: bool | None = None) -> tuple[str, int, int]:
        """(stream label, layer index, layers in its stack) of the attention module called ``name``.

        ``cross`` overrides the name-based cross-attention test when the caller knows better (torch MHA: key is
        not query).
        """
        stack, layer, size = "", 0, 1
        for path in self.stacks:
            prefix = path + "." if path else ""
            if name.startswith(prefix) and name != path:
                head = name[len(prefix) :].split(".", 1)[0]
                if head.isdigit():
                    stack, layer, size = path, int(head), self.stacks[path]
                    break
        is_cross = bool(_CROSS_NAME.search(name)) if cross is None else cross
        return self.label(stack, is_cross), layer, size

    def label(self, stack: str, cross: bool) -> str:
        """ "cross", "encoder"/"decoder" when the stack's path says so, else the path ("self" at the root).

        ``normalize_streams`` renames a lone self-attention stream to "self" once the forward pass is done.
        """
        if cross:
            return "cross"
        parts = stack.split(".")
        for role in ("encoder", "decoder"):
            if role in parts:
                return role
        return stack or "self"

    @property
    def seq2seq(self) -> bool:
        return {"encoder", "decoder"} <= {self.label(path, False) for path in self.stacks}

    def num_layers(self) -> int:
        return max(self.stacks.values(), default=1)


def check_selection(layers, heads, num_layers: int, num_heads: int | None) -> tuple[list[int] | None, list[int] | None]:
    """Validate user-given layer/head indices (negative layers count from the end); None means all."""
    layers = _index_list(layers, "layers")
    heads = _index_list(heads, "heads")
    for lay in layers or []:
        if not -num_layers <= lay < num_layers:
            raise ValueError(f"layer {lay} out of range: the model has {num_layers} layers")
    for h in heads or []:
        if h < 0 or (num_heads is not None and h >= num_heads):
            raise ValueError(f"head {h} out of range: the model has {num_heads} attention heads")
    return layers, heads


def wants_layer(layers: list[int] | None, layer: int, stack_len: int) -> bool:
    # Negative indices count from the end of each stack (an encoder and a decoder may differ in depth).
    return layers is None or any(lay == layer or lay + stack_len == layer for lay in layers)


def _index_list(value, what: str) -> list[int] | None:
    if value is None:
        return None
    items = [value] if _is_index(value) else list(value) if isinstance(value, (list, tuple, range)) else None
    if items is None or not all(_is_index(v) for v in items):
        raise TypeError(f"{what} must be an int or a list of ints, got {value!r}")
    out = [operator.index(v) for v in items]
    if not out:
        raise ValueError(f"{what} must not be empty (use None for all)")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} contains duplicates: {out}")
    return out


def _is_index(v) -> bool:
    return hasattr(v, "__index__") and not isinstance(v, bool)
