"""One stored layer as a source of weights by rectangle, whatever its storage (docs/format.md, "Storage per layer"):
decoded cbrt8 codes (`Weights`), or q/k plus the `recompute` container (`Recompute`, a "qk" layer).

Every view that draws from a level of detail (tiles, thumbnails, top-k, one head, sampled rows) asks a source for a
rectangle of one head, so no route ever needs a whole layer of float32 weights. Decoded sources are cached by bytes
(reading a step through the Python loader copies every blob of the step; the Rust loader streams it over gRPC), and
everything decoded here is checked against the manifest: damaged data is a 422 naming the layer, never a 500.
"""

from typing import Optional

import numpy as np
from tensorboard import errors

from tb_attention.analysis import recompute
from tb_attention.format import codec, metadata
from tb_attention.serve import lru
from tb_attention.serve.probe_reader import CorruptDataError

SOURCE_CACHE_BYTES = 512 << 20  # decoded layers kept (a 4,096-token layer of 32 heads is 512 MiB of codes)
_LUT = ((np.arange(256, dtype=np.float64) / 255.0) ** 3).astype(np.float32)  # cbrt8 codes -> (code/255)^3


class TooLargeError(errors.PublicError):
    """A request whose answer would exceed a documented bound (docs/http_api.md): ask for less (one head, tiles)."""

    http_code = 413


def _nbytes(source):
    return source.nbytes


class Weights:
    """A layer stored as cbrt8 codes [H, Q, K] and row exponents [H, Q]."""

    kind = "weights"

    def __init__(self, codes, row_exp):
        self.codes, self.row_exp = codes, row_exp
        self.num_heads, self.query_len, self.key_len = codes.shape
        self.nbytes = codes.nbytes + row_exp.nbytes

    def scale(self, head, r0, r1):
        return np.exp2(-self.row_exp[head, r0:r1].astype(np.float32) / 8.0)

    def block(self, head, r0, r1, c0, c1):
        """float32 [r1 - r0, c1 - c0]: the stored weights of a rectangle."""
        return _LUT[self.codes[head, r0:r1, c0:c1]] * self.scale(head, r0, r1)[:, None]

    def rows(self, head, rows):
        """float32 [len(rows), K]: whole rows."""
        rows = np.asarray(rows)
        return _LUT[self.codes[head, rows]] * np.exp2(-self.row_exp[head, rows].astype(np.float32) / 8.0)[:, None]

    def col_pooled(self, head, r0, r1, c0, c1, starts):
        """float32 [r1 - r0, len(starts)]: each row's largest weight over columns [starts[i], starts[i + 1]) of
        [c0, c1) (offsets from c0). Within a row the decoded weight grows with the code (one scale per row), so the
        codes are pooled first and only the pooled cells are decoded."""
        codes = np.maximum.reduceat(self.codes[head, r0:r1, c0:c1], starts, axis=1)
        return _LUT[codes] * self.scale(head, r0, r1)[:, None]

    def top_k(self, head, r0, r1, k):
        """(keys, weights) of each row's k largest weights, ranked by code (the same order as the weights)."""
        idx, _ = recompute.top_k(self.codes[head, r0:r1].astype(np.float32), k)
        return idx, _LUT[np.take_along_axis(self.codes[head, r0:r1], idx, axis=1)] * self.scale(head, r0, r1)[:, None]


class Recompute:
    """A "qk" layer: fp16 q [H, Q, D], k [H_kv, K, D], the per-row normalisers, overview, top-k and bias table."""

    kind = "qk"

    def __init__(self, spec, queries, keys, arrays, meta):
        self.spec, self.queries, self.keys, self.meta = spec, queries, keys, meta
        self.lse, self.overview = arrays["lse"], arrays["overview"]
        self.topk_keys, self.topk_codes = arrays.get("topk_keys"), arrays.get("topk_codes")
        self.bias = arrays.get("bias")
        self.num_heads, self.query_len = self.lse.shape
        self.key_len = keys.shape[1]
        self.nbytes = queries.nbytes + keys.nbytes + sum(a.nbytes for a in arrays.values())

    def kv_head(self, head):
        return head // self.spec.group

    def block(self, head, r0, r1, c0, c1):
        if self.hidden(r0, r1, c0, c1):
            return np.zeros((r1 - r0, c1 - c0), np.float32)
        q, k = self.queries[head], self.keys[self.kv_head(head)]
        return recompute.tile_weights(self.spec, q, k, head, self.lse[head], np.arange(r0, r1), np.arange(c0, c1))

    def hidden(self, r0, r1, c0, c1):
        """Whether the mask hides the whole rectangle: keys after the last row's position (causal family), or
        before the first row's window (sliding). Such blocks are zeros; computing them would double a causal
        head's coarse tile and make a sliding-window head's cost grow with Q² instead of Q · window."""
        s = self.spec
        if s.mask not in ("causal", "sliding", "chunked"):
            return False
        after = c0 > r1 - 1 + s.offset
        before = s.mask == "sliding" and c1 - 1 <= r0 + s.offset - s.window
        return after or before

    def rows(self, head, rows):
        q, k = self.queries[head], self.keys[self.kv_head(head)]
        return recompute.head_weights(self.spec, q, k, head, rows=np.asarray(rows), lse=self.lse[head])

    def col_pooled(self, head, r0, r1, c0, c1, starts):
        return np.maximum.reduceat(self.block(head, r0, r1, c0, c1), starts, axis=1)

    def top_k(self, head, r0, r1, k):
        return recompute.top_k(self.block(head, r0, r1, 0, self.key_len), k)


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
        _, q, k = self.qk(ctx, blobs, m, layer)
        try:
            blob = codec.decompress(self.reader.read_blob(ctx, blobs[metadata.attention_index(layer)]))
            meta, arrays = codec.decode_recompute(blob, m.num_heads, m.query_len, m.key_len)
            entry = m.layers[layer] if m.layers else None
            spec = recompute.Spec.from_layer(entry, m.num_heads, m.num_kv_heads, bias=arrays.get("bias"))
            if spec.sinks is not None and spec.sinks.shape != (m.num_heads,):
                raise ValueError(f"sinks has {spec.sinks.size} values for {m.num_heads} heads")
        except ValueError as e:  # recompute.NotRecomputable is one
            raise CorruptDataError(f"layer {layer}: the q/k-only layer cannot be rebuilt: {e}") from None
        return Recompute(spec, q, k, arrays, meta)


def sample_rows(query_len: int, count: Optional[int]) -> np.ndarray:
    """All rows, or `count` evenly spaced ones (always the first and the last; recompute.check_rows)."""
    if count is None or query_len <= count:
        return np.arange(query_len)
    return recompute.check_rows(query_len, count)
