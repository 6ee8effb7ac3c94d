"""add_attention's arrays on the training thread: what each layer stores (`store=`: weights, q/k or both), the
checks that a q/k-only layer can be rebuilt, and the copies (docs/format.md, "Storage per layer").

Constraints:
- The copy is the training thread's only real cost: float32 weights only when they are given, q/k as float16
  (what is stored), the check rows of a capture without weights; `max_step_bytes` counts exactly these.
- Everything that can be refused is refused here, in the call, naming the layer: a q/k-only layer without q/k or
  without a complete recompute spec when there are no weights to store instead. With weights, such a layer is
  stored as weights, with a warning.
"""

import collections
import warnings

import numpy as np

from tb_attention.analysis import recompute
from tb_attention.format import image as image_mod
from tb_attention.format import manifest as manifest_mod
from tb_attention.write import probe_args, validation

# In the order of write/jobs.Job's fields.
Prepared = collections.namedtuple(
    "Prepared", "attention queries keys layers shape storage tables check_rows check_weights"
)
KINDS = manifest_mod.STORAGE_KINDS  # "weights", "both", "qk"


def prepare(tag, attentions, queries, keys, layers, store, check, alloc, max_bytes):
    """Validated copies and the per-layer storage (None: weights everywhere, today's layout)."""
    have_weights = attentions is not None
    if not have_weights and (queries is None or keys is None):
        raise TypeError(
            "add_attention needs attentions, or queries and keys with layers= giving each layer's recompute "
            "parameters (scaling, mask, ...) to store only q/k (store='qk')"
        )
    w_shapes = validation._layer_list(attentions, "attentions", 3)[1] if have_weights else None
    q_shapes = None if queries is None else validation._layer_list(queries, "queries", 3)[1]
    k_shapes = None if keys is None else validation._layer_list(keys, "keys", 3)[1]
    if w_shapes is not None:
        num_layers, (heads, query_len, key_len) = len(w_shapes), w_shapes[0]
    else:
        assert q_shapes is not None and k_shapes is not None  # checked above
        num_layers, (heads, query_len, _) = len(q_shapes), q_shapes[0]
        key_len = k_shapes[0][1]
    _check_size(num_layers, w_shapes, q_shapes, k_shapes, check, max_bytes)
    attention = validation.attention(attentions, alloc) if have_weights else None
    shape = (num_layers, heads, query_len, key_len)
    queries, keys = probe_args.vectors(queries, keys, shape, alloc)
    kv_heads = None if keys is None else keys.shape[1]
    entries, tables = _tables(layers, num_layers, heads, query_len + key_len - 1)
    entries = probe_args.layer_info(entries, num_layers, heads, kv_heads)
    storage = _storage(store, num_layers, have_weights, queries is not None)
    storage = _recomputable(tag, storage, entries, tables, heads, kv_heads, have_weights)
    rows, real = _check(check, have_weights, shape)
    if storage is None or "qk" not in storage:
        tables = None
    return Prepared(attention, queries, keys, entries, shape, storage, tables, rows, real)


def probe_fields(shape, tokens, key_tokens, segments, patch_grid, image):
    """Validated tokens, key tokens, segment ids, patch grid and image (a copy: PNG encoding happens later)."""
    _, _, query_len, key_len = shape
    tokens = validation.token_list(tokens, "tokens", query_len)
    if key_tokens is None and key_len != query_len:
        raise ValueError(f"key_len {key_len} differs from query_len {query_len}: pass key_tokens")
    key_tokens = None if key_tokens is None else validation.token_list(key_tokens, "key_tokens", key_len)
    segments = validation.segment_ids(segments, query_len)
    grid = image_mod.grid(patch_grid, query_len, key_len)
    if image is not None:
        if grid is None:
            raise ValueError("image= needs patch_grid=(rows, cols): which tokens are which patches")
        image = image_mod.validate(image)
        image_mod.check_fits(image, grid)
    return tokens, key_tokens, segments, grid, image


def _check_size(num_layers, w_shapes, q_shapes, k_shapes, check, max_bytes):
    """Refuses, before any copy, a step whose copies exceed max_bytes (weights float32, q/k float16)."""
    weights = num_layers * int(np.prod(w_shapes[0])) if w_shapes else 0
    qk = 2 * sum(int(np.prod(s)) for s in (q_shapes or []) + (k_shapes or []))
    size = 4 * weights + qk + (0 if check is None else 4 * int(np.prod(np.shape(check[1]))))
    if max_bytes is None or size <= max_bytes:
        return
    held = f"{weights:,} attention weights ({4 * weights / 2**30:.1f} GiB as float32)" if weights else "q/k only"
    if qk:
        held += f" and {qk / 2**30:.1f} GiB of float16 q/k"
    raise ValueError(
        f"this step holds {held}, over max_step_bytes={max_bytes:,}: log a subset of layers or heads (e.g. "
        "[a[:8] for a in attentions[::4]]), store only q/k (store='qk' without attentions, or "
        "tb_attention.capture(model, weights=False)), or raise max_step_bytes (see docs/scale.md)"
    )


def _tables(layers, num_layers, heads, distances):
    """`bias` given as a float array [H, Q + K − 1] (a relative position table) becomes `bias: "relative"`, the
    table kept apart (it is stored in the layer's recompute container, not in the manifest)."""
    if layers is None or isinstance(layers, (str, bytes, dict)) or not hasattr(layers, "__len__"):
        return layers, None
    entries = list(layers)
    tables: list = [None] * len(entries)
    for i, entry in enumerate(entries):
        bias = entry.get("bias") if isinstance(entry, dict) else None
        if bias is None or isinstance(bias, str):
            continue
        if validation._is_torch(bias):
            validation.check_tensor_storage(bias, f"layers[{i}].bias")
            bias = bias.detach().cpu().numpy()
        table = np.array(bias, np.float32)
        if table.shape != (heads, distances):
            raise ValueError(
                f"layers[{i}].bias: a relative position table must be float [heads, query_len + key_len - 1] = "
                f"[{heads}, {distances}], got shape {list(table.shape)}"
            )
        if not np.isfinite(table).all():
            raise ValueError(f"layers[{i}].bias contains NaN or Inf")
        entries[i], tables[i] = {**entry, "bias": "relative"}, table
    if len(entries) != num_layers:
        return entries, None  # layer_info says what is wrong with the count
    return entries, tables


def _storage(store, num_layers, have_weights, have_qk):
    """The per-layer storage asked for, or None for today's layout (weights, and q/k when given)."""
    if store is None:
        return None if have_weights else ["qk"] * num_layers
    kinds = [store] * num_layers if isinstance(store, str) else store
    if isinstance(kinds, (bytes, dict)) or not hasattr(kinds, "__len__"):
        raise TypeError(f"store must be one of {', '.join(KINDS)} or a list of them, got {type(store).__name__}")
    kinds = list(kinds)
    if len(kinds) != num_layers or any(k not in KINDS for k in kinds):
        raise ValueError(f"store must be one of {', '.join(KINDS)}, or a list of {num_layers} of them, got {store!r}")
    for i, kind in enumerate(kinds):
        if kind != "weights" and not have_qk:
            raise ValueError(f"store={kind!r} for layer {i} needs queries and keys")
        if kind != "qk" and not have_weights:
            raise ValueError(f"store={kind!r} for layer {i} needs its attentions (or store='qk': rebuilt from q/k)")
    # A step with q/k stores them for every layer (blob positions are fixed), so a "weights" layer holds both.
    return [("both" if have_qk else k) if k == "weights" else k for k in kinds]


def _recomputable(tag, storage, entries, tables, heads, kv_heads, have_weights):
    """Each "qk" layer's recompute spec is complete; otherwise refused (no weights) or stored as weights (warned)."""
    if storage is None:
        return None
    for i, kind in enumerate(storage):
        if kind != "qk":
            continue
        name = f"layer {i}" if entries is None else f"layer {entries[i]['index']}"
        if entries is None:
            reason = "no layers= with its recompute parameters (scaling, mask, ...)"
        else:
            try:
                recompute.Spec.from_layer(entries[i], heads, kv_heads, None if tables is None else tables[i])
                continue
            except recompute.NotRecomputable as e:
                reason = str(e)
        if not have_weights:
            raise ValueError(f"{tag!r} {name}: cannot store only q/k ({reason}), and no attentions were given")
        warnings.warn(
            f"tb-attention: {tag!r} {name}: cannot store only q/k ({reason}); stored as weights", stacklevel=4
        )
        storage[i] = "both"
    return storage


def _check(check, have_weights, shape):
    """`check=(rows, weights)`: the real weights of some query rows, when the full weights do not exist (a capture
    with weights=False), so that the writer still compares what it rebuilds with what the model computed."""
    if check is None:
        return None, None
    if have_weights:
        raise ValueError("check= is for attentions=None: with attentions, the writer checks against them")
    num_layers, heads, query_len, key_len = shape
    rows, real = check
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(np.unique(rows)) != len(rows) or not len(rows):
        raise ValueError("check=(rows, weights): rows must be distinct query indices")
    if rows.min() < 0 or rows.max() >= query_len:
        raise ValueError(f"check=(rows, weights): a row is outside 0..{query_len - 1}")
    layers, shapes = validation._layer_list(real, "check weights", 3)
    if len(layers) != num_layers or set(shapes) != {(heads, len(rows), key_len)}:
        raise ValueError(
            f"check=(rows, weights): weights must be {num_layers} layers of [{heads}, {len(rows)}, {key_len}]"
        )
    return rows.astype(np.int64), validation.attention(layers)


def numbering(recorded, tag, layers, num_layers, num_heads, strict):
    """The model's layer/head indices that the metrics series of `tag` record (format.md, "Series": in their plugin
    content, which TensorBoard keeps from a series' first event only). `recorded`: {tag: numbering} of the series
    started so far. `strict` (add_metrics): a numbering that differs from the one the series started with is
    refused; add_attention keeps the series' numbering (its probe manifest has its own)."""
    mine = None
    if layers is not None:
        if isinstance(layers, (str, bytes, dict)) or not hasattr(layers, "__len__"):
            raise TypeError(f"layers must be a list with one entry per layer, got {type(layers).__name__}")
        # Only which layer and heads of the model a row of [L, H] is: recompute parameters do not apply here.
        kept = [e if not isinstance(e, dict) else {k: e[k] for k in ("index", "heads") if k in e} for e in layers]
        entries = probe_args.layer_info(kept, num_layers, num_heads, None)
        mine = [{k: v for k, v in e.items() if v is not None} for e in entries]
    if tag not in recorded:
        recorded[tag] = mine
    elif strict and layers is not None and mine != recorded[tag]:
        raise ValueError(
            f"the metrics of {tag!r} were first logged with layers={recorded[tag]}; a series keeps the numbering "
            "of its first step (TensorBoard keeps only that step's metadata): log this numbering under a new tag"
        )
    return recorded[tag]
