"""Which stream and layer an attention call belongs to, from its module's position in the module tree.

Module names are unstable across versions (ViT's ``attention.attention.query`` became ``attention.q_proj``), but
every transformer keeps its blocks in an ``nn.ModuleList``: the outermost list containing a module is its stack.
During a forward pass a call is keyed by (stack, cross-attention or not); its layer is the number of earlier calls
with that key in the same pass, so a module used for several layers (ALBERT's shared layer, looped stacks) gives
one layer per call. Stream names are given once the pass is over, from the stacks that were actually used:
``encoder``/``decoder``/``cross`` for encoder-decoders, one name per tower for models with several (``text``,
``vision``, ``audio``, ...), and ``self`` for a model with a single stack.
"""

from __future__ import annotations

import operator
import re

import torch

_CROSS_NAME = re.compile(r"cross|encdec|encoder_attn", re.IGNORECASE)
# "text_model", "vision_tower", "audio_encoder", "image_transformer": a tower and its modality.
_TOWER = re.compile(r"^(\w+?)_(model|tower|encoder|decoder|transformer|backbone)$")
_TOWER_ALIASES = {"language": "text", "visual": "vision", "img": "image"}
_LISTS = (torch.nn.ModuleList, torch.nn.Sequential)
_DEPTH_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers")


class Locator:
    def __init__(self, model: torch.nn.Module):
        modules = list(model.named_modules())  # one walk: this runs at every capture
        self.names = {id(m): name for name, m in modules}
        lists = {name: len(m) for name, m in modules if isinstance(m, _LISTS) and len(m)}
        # A list nested in a layer of another list (T5Block.layer) is part of that layer, not a stack of its own.
        self.stacks = {name: n for name, n in lists.items() if not any(name.startswith(p + ".") for p in lists)}
        self._plain = [p for p in self.stacks if not _role(p) and not _tower(p)] or [""]
        self._depths = [
            v
            for _, m in modules
            for v in (getattr(getattr(m, "config", None), k, None) for k in _DEPTH_KEYS)
            if isinstance(v, int) and not isinstance(v, bool)
        ]

    def name(self, module: torch.nn.Module) -> str:
        return self.names.get(id(module), type(module).__name__)

    def stack(self, name: str) -> tuple[str, int]:
        """(path of the stack holding module ``name``, its length); a module outside every list is its own stack,
        named after its top-level parent."""
        for path, size in self.stacks.items():
            prefix = path + "." if path else ""
            if name.startswith(prefix) and name != path and name[len(prefix) :].split(".", 1)[0].isdigit():
                return path, size
        return "#" + name.split(".", 1)[0], 1

    def key(self, name: str, cross: bool | None = None) -> tuple[tuple[str, bool], int | None]:
        """The stream key (stack path, cross-attention) of a call of module ``name``, and the stack's length (None
        when unknown).

        Stacks that name neither a role (encoder/decoder) nor a tower share one key, "", so their calls are
        numbered in call order across them, as transformers' ``output_attentions`` lists them (HRM's interleaved
        H and L modules). ``cross`` overrides the name-based cross-attention test when the caller knows better
        (torch MHA: key is not query)."""
        path, size = self.stack(name)
        if not path.startswith("#") and not _role(path) and not _tower(path):
            size = size if path == self._plain[0] and len(self._plain) == 1 else None
            path = ""
        is_cross = bool(_CROSS_NAME.search(name)) if cross is None else cross
        return (path, is_cross), size

    def labels(self, keys) -> dict[tuple[str, bool], str]:
        """Stream names for the stream keys used in a forward pass (see the module docstring)."""
        keys = list(dict.fromkeys(keys))
        roles = {k: _role(k[0]) for k in keys}
        towers = {k: _tower(k[0]) for k in keys}
        by_tower = len({towers[k] for k in keys if towers[k] and not k[0].startswith("#")}) > 1
        names = {}
        for k in keys:
            path, cross = k
            if path.startswith("#"):
                base = path[1:]  # an attention outside every stack (a pooling head, a resampler)
            elif by_tower and towers[k]:
                own = [j for j in keys if towers[j] == towers[k] and not j[1]]
                base = towers[k] + (f"_{roles[k]}" if roles[k] and len({roles[j] for j in own}) > 1 else "")
            else:
                base = roles[k] or path or "self"
            names[k] = base
        own_names = {names[k] for k in keys if not k[1]}
        for k in keys:
            if k[1]:  # cross-attention: "cross", or "<tower>_cross" when several streams cross-attend
                names[k] = "cross" if sum(j[1] for j in keys) == 1 or not by_tower else f"{names[k]}_cross"
        if len(own_names) == 1 and not ({"encoder", "decoder"} & own_names and self.seq2seq):
            only = own_names.pop()
            names = {k: ("self" if v == only else v) for k, v in names.items()}
        return _unique(names)

    @property
    def seq2seq(self) -> bool:
        roles = {_role(path) for path in self.stacks}
        return {"encoder", "decoder"} <= roles

    def num_layers(self) -> int:
        """An upper bound for layer indices: the longest stack, or the configured depth when a shared layer is
        called several times."""
        return max([*self.stacks.values(), *self._depths], default=1)


def _role(path: str) -> str:
    # The outermost role wins: EncoderDecoderModel's decoder is "decoder.bert.encoder.layer".
    return next((p for p in path.split(".") if p in ("encoder", "decoder")), "")


def _tower(path: str) -> str:
    for part in path.split(".")[:-1]:
        m = _TOWER.match(part)
        if m and m.group(1) != "base":
            return _TOWER_ALIASES.get(m.group(1), m.group(1))
    return ""


def _unique(names: dict) -> dict:
    seen: dict[str, int] = {}
    out = {}
    for k, v in names.items():
        seen[v] = seen.get(v, 0) + 1
        out[k] = v if seen[v] == 1 else f"{v}{seen[v]}"
    return out


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
