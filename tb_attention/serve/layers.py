"""One stored layer as a source of weights by rectangle, whatever its storage (docs/format.md, "Storage per layer"):
decoded cbrt8 codes (`Weights`), or q/k plus the `recompute` container (`Recompute`, a "qk" layer); the sources
themselves are pure numpy (analysis/lod.py), this module reads and checks what they are built from.

Every view that draws from a level of detail (tiles, thumbnails, top-k, one head, sampled rows) asks a source for a
rectangle of one head, so no route ever needs a whole layer of float32 weights. Decoded sources are cached by bytes
(reading a step through the Python loader copies every blob of the step; the Rust loader streams it over gRPC), and
everything decoded here is checked against the manifest: damaged data is a 422 naming the layer, never a 500.
"""

from typing import Optional

import numpy as np
from tensorboard import errors

from tb_attention.analysis import recompute
from tb_attention.analysis.lod import Recompute, Weights
from tb_attention.format import codec, metadata
from tb_attention.serve import lru
from tb_attention.serve.probe_reader import CorruptDataError

SOURCE_CACHE_BYTES = 512 << 20  # decoded layers kept (a 4,096-token layer of 32 heads is 512 MiB of codes)


class TooLargeError(errors.PublicError):
    """A request whose answer would exceed a documented bound (docs/http_api.md): ask for less (one head, tiles)."""

    http_code = 413


def _nbytes(source):
    return source.nbytes


class LayerReader:
    """Decoded layers of the steps the plugin's reader gives, cached by bytes."""

    def __init__(self, reader, max_bytes=SOURCE_CACHE_BYTES):
        self.reader = reader
        self.cache = lru.ByteLru(max_bytes, _nbytes)

    def source(self, ctx, blobs, manifest, layer):
        key = (blobs[metadata.attention_index(layer)].blob_key, layer)
        return self.cache.get(key, lambda: self._read(ctx, blobs, manifest, layer))

    def container(self, ctx, blobs, layer, index):
        """(meta, arrays) of one blob; damaged bytes are a 422 naming the layer."""
        try:
            return codec.unpack(codec.decompress(self.reader.read_blob(ctx, blobs[index])))
        except ValueError as e:
            raise CorruptDataError(f"layer {layer}: stored data cannot be decoded: {e}") from None

    def qk(self, ctx, blobs, manifest, layer):
        """(meta, queries [H, Q, D], keys [H_kv, K, D]) checked against the manifest."""
        meta, arrays = self.container(ctx, blobs, layer, metadata.qk_index(layer, manifest.num_layers))
        q, k = arrays.get("queries"), arrays.get("keys")
        m = manifest
        if q is None or k is None or q.ndim != 3 or k.ndim != 3:
            raise CorruptDataError(f"layer {layer}: the q/k container lacks 3-d 'queries' and 'keys'")
        if q.shape != (m.num_heads, m.query_len, m.d_head) or k.shape != (m.num_kv_heads, m.key_len, m.d_head):
            raise CorruptDataError(
                f"layer {layer}: queries {list(q.shape)} / keys {list(k.shape)} do not match the manifest "
                f"([{m.num_heads}, {m.query_len}, {m.d_head}] / [{m.num_kv_heads}, {m.key_len}, {m.d_head}])"
            )
        return meta, q, k

    def _read(self, ctx, blobs, manifest, layer):
        m = manifest
        if m.weights_stored(layer):
            meta, arrays = self.container(ctx, blobs, layer, metadata.attention_index(layer))
            codes, row_exp = arrays.get("codes"), arrays.get("row_exp")
            shape = (m.num_heads, m.query_len, m.key_len)
            if meta.get("encoding") != "cbrt8" or codes is None or row_exp is None:
                raise CorruptDataError(f"layer {layer}: the attention blob is not a cbrt8 container")
            if codes.dtype != np.uint8 or row_exp.dtype != np.uint8 or codes.shape != shape:
                raise CorruptDataError(f"layer {layer}: attention codes {list(codes.shape)}, expected {list(shape)}")
            if row_exp.shape != shape[:2]:
                raise CorruptDataError(f"layer {layer}: row_exp {list(row_exp.shape)}, expected {list(shape[:2])}")
            return Weights(codes, row_exp)
        qk_key = (blobs[metadata.qk_index(layer, m.num_layers)].blob_key, "qk")

        def load_qk():  # only when a tile or a head is rebuilt; kept in the same byte-bounded cache
            return self.cache.get(qk_key, lambda: _QK(*self.qk(ctx, blobs, m, layer)[1:])).pair

        try:
            blob = codec.decompress(self.reader.read_blob(ctx, blobs[metadata.attention_index(layer)]))
            meta, arrays = codec.decode_recompute(blob, m.num_heads, m.query_len, m.key_len)
            entry = m.layers[layer] if m.layers else None
            spec = recompute.Spec.from_layer(entry, m.num_heads, m.num_kv_heads, bias=arrays.get("bias"))
            if spec.sinks is not None and spec.sinks.shape != (m.num_heads,):
                raise ValueError(f"sinks has {spec.sinks.size} values for {m.num_heads} heads")
        except ValueError as e:  # recompute.NotRecomputable is one
            raise CorruptDataError(f"layer {layer}: the q/k-only layer cannot be rebuilt: {e}") from None
        return Recompute(spec, load_qk, None, arrays, meta, key_len=m.key_len)


class _QK:
    def __init__(self, queries, keys):
        self.pair = (queries, keys)
        self.nbytes = queries.nbytes + keys.nbytes


def sample_rows(query_len: int, count: Optional[int]) -> np.ndarray:
    """All rows, or `count` evenly spaced ones (always the first and the last; recompute.check_rows)."""
    if count is None or query_len <= count:
        return np.arange(query_len)
    return recompute.check_rows(query_len, count)
