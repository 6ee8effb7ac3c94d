"""Turns one validated probe step into TensorBoard events (runs on the writer's background thread)."""

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_attention.format import codec, metadata
from tb_attention.format import image as image_mod
from tb_attention.format import manifest as manifest_mod

# zlib pays off only where it saves real space (cbrt8 codes of long, peaked rows); q/k in fp16 hardly compress.
_MIN_SAVING = 0.9


def _maybe_compress(container):
    packed = codec.compress(container)
    return packed if len(packed) < _MIN_SAVING * len(container) else container


def manifest(
    attention, queries, keys, tokens, key_tokens, segments=None, image=None, patch_grid=None, layers=None, storage=None
):
    """The manifest's fields; `attention` is the weights or, for a step of q/k only, its shape [L, H, Q, K]."""
    num_layers, num_heads, query_len, key_len = getattr(attention, "shape", attention)
    extra = {} if segments is None else {"segments": segments}  # optional: absent unless logged
    if layers is not None:  # original layer/head indices and recompute parameters (format.md, "Layers")
        extra["layers"] = layers
    if storage is not None:  # a layer holds only q/k (format.md, "Storage per layer")
        extra["storage"] = storage
    if patch_grid is not None:
        extra["patch_grid"] = patch_grid
    if image is not None:  # the PNG is the blob after the last attention / q/k blob
        index = metadata.image_index(num_layers, queries is not None)
        extra["image"] = {"index": index, "width": image.shape[1], "height": image.shape[0]}
    return {
        "version": metadata.VERSION,
        "tokens": tokens,
        "key_tokens": key_tokens,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "query_len": query_len,
        "key_len": key_len,
        "has_qk": queries is not None,
        "num_kv_heads": None if keys is None else keys.shape[1],
        "d_head": None if queries is None else queries.shape[-1],
        **extra,
    }


def probe_blobs(
    attention, queries, keys, tokens, key_tokens, segments=None, image=None, patch_grid=None, layers=None, slots=None
):
    """`slots` (write/qk_layers.py): the layers' attention blobs already built, with the final storage and layers."""
    storage = None
    if slots is not None:
        storage, layers = slots.storage, slots.layers
    fields = manifest(attention, queries, keys, tokens, key_tokens, segments, image, patch_grid, layers, storage)
    blobs = [manifest_mod.encode(fields)]
    if slots is None:
        blobs += [_maybe_compress(codec.attention_container(layer)) for layer in attention]
    else:
        blobs += slots.blobs
    if queries is not None:
        # Not even tried: fp16 q/k save ~7 % under zlib (below _MIN_SAVING) and cost 1.7 s per 4,096-token layer.
        blobs += [codec.qk_container(q, k) for q, k in zip(queries, keys)]
    if image is not None:
        blobs.append(image_mod.encode_png(image))  # PNG, not TBA1: the browser draws it as it is
    return blobs


def _blob_sequence_proto(blobs):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]),
        string_val=blobs,
    )


def _value(tag, meta, first, tensor):
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if first:
        value.metadata.CopyFrom(meta)
    return value


def probe_events(job, first):
    """-> [Event] for one add_attention call's probe; `first` sends the series metadata (TensorBoard keeps only the
    first). The per-head metrics of the step are separate events (`metric_events`)."""
    blobs = probe_blobs(
        job.attention if job.attention is not None else job.shape,
        job.queries,
        job.keys,
        job.tokens,
        job.key_tokens,
        getattr(job, "segments", None),
        getattr(job, "image", None),
        getattr(job, "patch_grid", None),
        getattr(job, "layers", None),
        getattr(job, "slots", None),
    )
    probe_meta = metadata.create_summary_metadata(metadata.KIND_PROBE, job.description)
    value = _value(job.tag, probe_meta, first, _blob_sequence_proto(blobs))
    return [event_pb2.Event(wall_time=job.wall_time, step=job.step, summary=summary_pb2.Summary(value=[value]))]


def metric_values(attention, options):
    """float32 [L, H] per metric (tb_attention.analysis.metrics.compute) for attention [L, H, Q, K] or [L, B, H, Q, K]."""
    from tb_attention.analysis import metrics

    return metrics.compute(attention, **(options or {}))


def metric_events(tag, step, wall_time, values, first, numbered=None):
    """-> [Event], one `head_stats` tensor tag `<tag>/_<metric>` per metric; `first`: the set of metric names
    whose series metadata still has to be sent; `numbered`: the model's layer/head indices, recorded there."""
    from tb_attention.analysis import metrics

    # One event per step holding every metric's value: one record to frame, checksum and write.
    summary_values = []
    for name, value in values.items():
        value = np.ascontiguousarray(value, np.float32)
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in value.shape]
            ),
            tensor_content=value.astype("<f4", copy=False).tobytes(),
        )
        meta = None
        if name in first:
            fields = {"probe": tag, "stat": name}
            if name == "topk_mass":
                fields["k"] = metrics.TOPK
            if numbered is not None:
                fields["layers"] = numbered
            meta = metadata.create_summary_metadata(
                metadata.KIND_HEAD_STATS, metrics.DESCRIPTIONS.get(name, ""), **fields
            )
        summary_values.append(_value(metadata.stats_tag(tag, name), meta, meta is not None, tensor))
    crc = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT64, tensor_shape=tensor_shape_pb2.TensorShapeProto(), int64_val=[codec.stats_crc(values)]
    )
    crc_meta = metadata.create_summary_metadata(metadata.KIND_HEAD_STATS_CRC, "", probe=tag)
    summary_values.append(_value(metadata.stats_crc_tag(tag), crc_meta, bool(first), crc))
    return [event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=summary_values))]
