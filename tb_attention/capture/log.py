"""Bridge to the writer: one ``add_attention`` call per stream and batch row, padding removed."""

from __future__ import annotations

import warnings

import numpy as np

from .log_layers import layer_list


def log_capture(
    writer, tag: str, cap, *, step: int, tokens=None, decoder_tokens=None, rows=None, image=None, store=None
) -> list[str]:
    """Write a capture as attention probes; returns the tags written.

    Tags: ``tag`` for a single-stream model; ``tag/encoder``, ``tag/decoder``, ``tag/cross`` for encoder-decoder
    models; one per tower for models with several (``tag/text``, ``tag/vision``, ...); with ``/<row>`` appended when
    the batch has several rows, and ``/stage<i>`` when the layers of a stream differ in shape (hierarchical vision
    models such as PVT-v2 or SegFormer). ``tokens`` label the text side (the encoder, the only stack, or the text
    tower) and ``decoder_tokens`` a decoder's side: one list of strings, or one list per batch row; each list covers
    either the full padded input or only its non-padding tokens. Image streams (a ViT, a vision tower) get
    CLS/register/patch labels, their ``patch_grid`` and the captured input image (``image=`` replaces it: e.g. the
    un-normalised picture); other streams without tokens get position numbers. Sentence pairs (``token_type_ids``
    with a second segment) pass their ``segments`` to the writer.

    ``store``: as ``add_attention``'s, for every probe ("weights", "both", "qk", or a list per layer of a probe); a
    layer that cannot be stored as q/k only (no q/k: the output_attentions fallback; a position term that is not
    a relative table; a mask no name describes) keeps its weights, with a warning. A ``weights=False`` capture
    is stored as q/k only (``store="qk"``); a layer of it that cannot be rebuilt from q/k is refused.
    """
    if not cap.streams:
        raise ValueError("nothing was captured: run the model inside the `with tb_attention.capture(...)` block")
    if image is not None and not cap.visions:
        raise ValueError("image= is for ViT captures: this capture recorded no patch grid (no pixel_values input)")
    batch = cap.batch_size
    rows = range(batch) if rows is None else rows
    written = []
    for stream, recs in cap.streams.items():
        q_side, k_side = _sides(cap, stream, tokens, decoder_tokens)
        groups = _shape_groups(recs)
        for g, group in enumerate(groups):
            base = tag if len(cap.streams) == 1 else f"{tag}/{stream}"
            base = base if len(groups) == 1 else f"{base}/stage{g}"
            for row in rows:
                probe = cap.probe(stream, row, records=group)
                q_tokens = _labels(q_side, row, batch, probe.query_positions, cap, stream)
                k_tokens = _labels(k_side, row, batch, probe.key_positions, cap, stream, key_side=True)
                keys = probe.keys
                if keys is not None and not all(r.regular_gqa() for r in group):
                    # The selected heads do not share key heads in the h // n_rep pattern: store one key per head.
                    keys = [k[r.kv_map] for k, r in zip(keys, group, strict=True)]
                name = base if batch == 1 else f"{base}/{row}"
                kinds = _store(store, probe, len(group), name)
                extras = _extras(cap, stream, group, row, probe, image, [k == "qk" for k in kinds or ()] or None)
                if kinds is not None:  # passed only when asked for (stand-ins such as the notebook's lack it)
                    extras["store"] = kinds
                if probe.check is not None:
                    extras["check"] = probe.check
                writer.add_attention(
                    name,
                    probe.attentions,
                    tokens=q_tokens,
                    step=step,
                    queries=probe.queries,
                    keys=keys,
                    key_tokens=k_tokens if _is_cross(stream) else None,
                    **extras,
                )
                written.append(name)
    return written


def _store(store, probe, num_layers: int, name: str):
    """The per-layer storage to ask the writer for, or None for its default."""
    if probe.attentions is None:  # weights=False: q/k is all there is
        if store is not None and set([store] if isinstance(store, str) else store) != {"qk"}:
            raise ValueError(
                f"{name}: this capture was made with weights=False and holds no weights, so it can only be stored as "
                f"q/k (store='qk'), not store={store!r}"
            )
        return ["qk"] * num_layers
    if store is None:
        return None
    kinds = [store] * num_layers if isinstance(store, str) else list(store)
    if len(kinds) != num_layers:
        raise ValueError(f"{name}: store has {len(kinds)} entries for {num_layers} layers")
    if probe.queries is None and any(k != "weights" for k in kinds):
        warnings.warn(
            f"tb-attention: {name!r}: no queries/keys were captured (the output_attentions fallback); stored as weights",
            stacklevel=4,
        )
        return None
    return kinds


def _is_cross(stream: str) -> bool:
    return stream == "cross" or stream.endswith("_cross")


def _text(stream: str) -> bool:
    return stream in ("self", "encoder", "text") or stream.startswith("text_")


def _sides(cap, stream: str, tokens, decoder_tokens):
    """The user's token lists for the query and key side of a stream (None: labels from the capture)."""
    if stream in cap.visions:
        return None, None
    if stream == "decoder":
        return decoder_tokens, decoder_tokens
    if _is_cross(stream):
        return (decoder_tokens if decoder_tokens is not None else tokens), tokens
    return (tokens, tokens) if _text(stream) else (None, None)


def _shape_groups(recs) -> list[list]:
    """Consecutive layers of equal shape (heads, query length, key length): one probe each."""
    groups: list[list] = []
    for r in recs:
        if groups and groups[-1][-1].shape[1:] == r.shape[1:]:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _extras(cap, stream: str, recs, row: int, probe, image=None, relative=None) -> dict:
    """Optional writer arguments, passed only when they apply (older writers and stand-ins lack them)."""
    extras = {}
    v = cap.visions.get(stream)
    if v is not None and len(probe.query_positions) == v.num_special + v.grid[0] * v.grid[1]:
        rows, cols = v.grid
        extras["patch_grid"] = {"rows": rows, "cols": cols, "patch_size": v.patch_size, "num_special": v.num_special}
        if image is None:
            extras["image"] = v.images[row]
        elif isinstance(image, (list, tuple)):
            extras["image"] = image[row]  # one image per batch row
        else:
            extras["image"] = image
    extras["layers"] = layer_list(recs, row, probe, relative)  # the model's layer/head indices, recompute parameters
    if any(r.extras.get("sinks") is not None for r in recs):
        extras["partial_rows"] = True  # sink logits (GPT-OSS) take part of each row: rows rightly sum below 1
    segments = cap.inputs[1].get("token_type_ids") if cap.inputs else None
    if segments is not None and stream in ("self", "encoder", "text"):
        ids = segments.tensor[row]
        if ids.shape[0] > int(probe.query_positions.max(initial=-1)):
            ids = ids[probe.query_positions]
            if ids.max() > 0:
                extras["segments"] = ids.tolist()
    return extras


def _labels(tokens, row: int, batch: int, positions: np.ndarray, cap, stream: str, key_side=False) -> list[str]:
    # Patch labels for an image stream, or for the keys of a cross-attention that reads one (BLIP's text over the
    # image): the image's own tokens, whatever text tokens were given.
    for name, v in cap.visions.items():
        labels = v.token_labels()
        if len(labels) == len(positions) and (name == stream or (key_side and _is_cross(stream))):
            return labels
    if tokens is None:
        return [str(p) for p in positions]
    if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
        raise TypeError(f"tokens must be a list of strings or one list per batch row, got {type(tokens).__name__}")
    per_row = bool(tokens) and isinstance(tokens[0], (list, tuple))
    if per_row and len(tokens) != batch:
        raise ValueError(f"got token lists for {len(tokens)} rows but the batch has {batch} rows")
    seq = list(tokens[row] if per_row else tokens)
    if len(seq) == len(positions):
        return [str(t) for t in seq]
    if len(seq) > int(positions.max(initial=-1)):
        return [str(seq[p]) for p in positions]
    raise ValueError(f"row {row}: {len(seq)} tokens given for {len(positions)} non-padding positions")
