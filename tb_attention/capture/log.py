"""Bridge to the writer: one ``add_attention`` call per stream and batch row, padding removed."""

from __future__ import annotations

import numpy as np


def log_capture(
    writer, tag: str, cap, *, step: int, tokens=None, decoder_tokens=None, rows=None, image=None
) -> list[str]:
    """Write a capture as attention probes; returns the tags written.

    Tags: ``tag`` for a single-stream model, ``tag/encoder``, ``tag/decoder``, ``tag/cross`` for encoder-decoder
    models, with ``/<row>`` appended when the batch has several rows. ``tokens`` (encoder / only side) and
    ``decoder_tokens``: one list of strings, or one list per batch row; each list covers either the full padded
    input or only its non-padding tokens. Without tokens, ViT inputs get CLS/register/patch labels and other
    models position numbers. ViT probes pass their ``patch_grid`` (rows, cols, patch size, special tokens) and the
    captured input image (``image=`` replaces it: e.g. the un-normalised picture), and sentence pairs
    (``token_type_ids`` with a second segment) their ``segments``, to the writer.
    """
    if not cap.streams:
        raise ValueError("nothing was captured: run the model inside the `with tb_attention.capture(...)` block")
    if image is not None and cap.vision is None:
        raise ValueError("image= is for ViT captures: this capture recorded no patch grid (no pixel_values input)")
    batch = cap.batch_size
    rows = range(batch) if rows is None else rows
    written = []
    for stream in cap.streams:
        query_side = decoder_tokens if stream in ("decoder", "cross") else tokens
        key_side = decoder_tokens if stream == "decoder" else tokens
        base = tag if len(cap.streams) == 1 else f"{tag}/{stream}"
        for row in rows:
            probe = cap.probe(stream, row)
            q_tokens = _row_tokens(query_side, row, batch, probe.query_positions, cap)
            k_tokens = _row_tokens(key_side, row, batch, probe.key_positions, cap)
            keys = probe.keys
            recs = cap.streams[stream]
            if keys is not None and not all(r.regular_gqa() for r in recs):
                # The selected heads do not share key heads in the h // n_rep pattern: store one key per head.
                keys = [k[r.kv_map] for k, r in zip(keys, recs, strict=True)]
            name = base if batch == 1 else f"{base}/{row}"
            writer.add_attention(
                name,
                probe.attentions,
                tokens=q_tokens,
                step=step,
                queries=probe.queries,
                keys=keys,
                key_tokens=k_tokens if stream == "cross" else None,
                **_extras(cap, stream, row, probe, image),
            )
            written.append(name)
    return written


def _extras(cap, stream: str, row: int, probe, image=None) -> dict:
    """Optional writer arguments, passed only when they apply (older writers and stand-ins lack them)."""
    extras = {}
    v = cap.vision
    if v is not None and stream == "self" and len(probe.query_positions) == v.num_special + v.grid[0] * v.grid[1]:
        rows, cols = v.grid
        extras["patch_grid"] = {"rows": rows, "cols": cols, "patch_size": v.patch_size, "num_special": v.num_special}
        if image is None:
            extras["image"] = v.images[row]
        elif isinstance(image, (list, tuple)):
            extras["image"] = image[row]  # one image per batch row
        else:
            extras["image"] = image
    if any(r.extras.get("sinks") is not None for r in cap.streams[stream]):
        extras["partial_rows"] = True  # sink logits (GPT-OSS) take part of each row: rows rightly sum below 1
    segments = cap.inputs[1].get("token_type_ids") if cap.inputs else None
    if segments is not None and stream in ("self", "encoder"):
        ids = segments.tensor[row][probe.query_positions]
        if ids.max() > 0:
            extras["segments"] = ids.tolist()
    return extras


def _row_tokens(tokens, row: int, batch: int, positions: np.ndarray, cap) -> list[str]:
    if tokens is None:
        if cap.vision is not None:
            labels = cap.vision.token_labels()
            if len(labels) == len(positions):
                return labels
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
