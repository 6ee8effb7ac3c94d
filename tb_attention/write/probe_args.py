"""Checks of add_attention's per-layer arguments: queries/keys against the attention's shape, and `layers=` (each
stored layer's index in the model, its heads' indices and the parameters that recompute its weights from q/k)."""

import math
import numbers

from tb_attention.format import manifest as manifest_mod
from tb_attention.write import validation

# What `layers=` entries may hold (docs/format.md, "Layers"); anything else is refused, so a typo ("scale") is not
# silently stored as unknown.
_INT_KEYS = ("index", "window", "chunk", "prefix", "offset")
_FLOAT_KEYS = ("scaling", "softcap")
_LIST_INT_KEYS = ("heads", "kv_heads")


def vectors(queries, keys, shape, alloc):
    """Validated copies of queries [L, H, Q, D] and keys [L, H_kv, K, D] (or (None, None))."""
    if queries is None and keys is None:
        return None, None
    if queries is None or keys is None:
        raise ValueError("pass queries and keys together (or neither)")
    num_layers, heads, query_len, key_len = shape
    q = validation.vectors(queries, "queries", query_len, alloc=alloc)
    k = validation.vectors(keys, "keys", key_len, d_head=q.shape[-1], alloc=alloc)
    if q.shape[:2] != (num_layers, heads):
        raise ValueError(f"queries have {q.shape[0]} layers x {q.shape[1]} heads, attention {num_layers} x {heads}")
    if k.shape[0] != num_layers or heads % k.shape[1]:
        raise ValueError(
            f"keys have {k.shape[0]} layers x {k.shape[1]} heads; need {num_layers} layers and a head count "
            f"dividing {heads} (grouped-query attention)"
        )
    return q, k


def layer_info(layers, num_layers, num_heads, num_kv_heads):
    """`layers=` as the manifest stores it: a list with one dict per stored layer, or None.

    An entry is the layer's index in the model (an int), or a dict with `index` and any of `heads` (the model's head
    index of each stored head), `kv_heads`, `scaling`, `softcap`, `mask` ("none", "causal", "sliding", "prefix",
    "tensor", "chunked", "band"), `offset`, `window`, `chunk`, `prefix`, `bias` ("none", "additive", …) and `sinks`
    (one logit per head). A missing key or None means unknown: the views then say so instead of assuming a default.
    """
    if layers is None:
        return None
    if isinstance(layers, (str, bytes, dict)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers must be a list with one entry per layer, got {type(layers).__name__}")
    out = [_entry(e, i) for i, e in enumerate(layers)]
    manifest_mod.validate_layers(out, num_layers, num_heads, num_kv_heads)  # ManifestError is a ValueError
    return out


def _entry(entry, i):
    if isinstance(entry, numbers.Integral) and not isinstance(entry, bool):
        return {"index": int(entry)}
    if not isinstance(entry, dict):
        raise TypeError(f"layers[{i}] must be a layer index or a dict, got {type(entry).__name__}")
    unknown = sorted(set(entry) - {*_INT_KEYS, *_FLOAT_KEYS, *_LIST_INT_KEYS, "mask", "bias", "sinks"})
    if unknown:
        raise ValueError(f"layers[{i}]: unknown keys {unknown}")
    out: dict = {}
    for key, value in entry.items():
        if value is None:
            out[key] = None
        elif key in _INT_KEYS:
            out[key] = _int(value, f"layers[{i}].{key}")
        elif key in _FLOAT_KEYS:
            out[key] = _float(value, f"layers[{i}].{key}")
        elif key in _LIST_INT_KEYS:
            out[key] = [_int(v, f"layers[{i}].{key}") for v in _seq(value, f"layers[{i}].{key}")]
        elif key == "sinks":
            out[key] = [_float(v, f"layers[{i}].sinks") for v in _seq(value, f"layers[{i}].sinks")]
        else:
            out[key] = str(value)
    return out


def _seq(value, where):
    if hasattr(value, "tolist"):  # numpy arrays, torch tensors
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{where} must be a list, got {type(value).__name__}")
    return list(value)


def _int(value, where):
    if hasattr(value, "item") and not isinstance(value, numbers.Number):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an integer, got {type(value).__name__}")
    return int(value)


def _float(value, where):
    if hasattr(value, "item") and not isinstance(value, numbers.Number):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)
