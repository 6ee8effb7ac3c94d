"""Turns one validated probe step into TensorBoard events (runs on the writer's background thread)."""

import json

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.util import tensor_util

from tb_attention import codec, metadata

# zlib pays off only where it saves real space (cbrt8 codes of long, peaked rows); q/k in fp16 hardly compress.
_MIN_SAVING = 0.9


def _maybe_compress(container):
    packed = codec.compress(container)
    return packed if len(packed) < _MIN_SAVING * len(container) else container


def head_entropy(attention):
    """Mean over query rows of -sum_k w log w, in nats; float32 [L, H]."""
    w = attention
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(w > 0, w * np.log(w), 0.0)
    return (-plogp.sum(axis=-1)).mean(axis=-1).astype(np.float32)


def manifest(attention, queries, keys, tokens, key_tokens):
    num_layers, num_heads, query_len, key_len = attention.shape
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
    }


def probe_blobs(attention, queries, keys, tokens, key_tokens):
    blobs = [json.dumps(manifest(attention, queries, keys, tokens, key_tokens)).encode()]
    blobs += [_maybe_compress(codec.attention_container(layer)) for layer in attention]
    if queries is not None:
        blobs += [_maybe_compress(codec.qk_container(q, k)) for q, k in zip(queries, keys)]
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
    """-> [Event] for one add_attention call; `first` sends the series metadata (TensorBoard keeps only the first)."""
    blobs = probe_blobs(job.attention, job.queries, job.keys, job.tokens, job.key_tokens)
    probe_meta = metadata.create_summary_metadata(metadata.KIND_PROBE, job.description)
    stat_meta = metadata.create_summary_metadata(metadata.KIND_HEAD_STATS, probe=job.tag, stat="entropy")
    values = [
        _value(job.tag, probe_meta, first, _blob_sequence_proto(blobs)),
        _value(
            metadata.stats_tag(job.tag, "entropy"),
            stat_meta,
            first,
            tensor_util.make_tensor_proto(head_entropy(job.attention)),
        ),
    ]
    return [
        event_pb2.Event(wall_time=job.wall_time, step=job.step, summary=summary_pb2.Summary(value=[v]))
        for v in values
    ]
