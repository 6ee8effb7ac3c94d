"""What a notebook output shows: probes, their steps and each step's layers, whichever source they came from (arrays
in memory, a capture, a logdir). Each layer can be served whole, exactly as the plugin's `attention` route answers,
or reduced to each query's top k keys for long probes (the level of detail of docs/notebook.md)."""

import dataclasses
import json
from typing import Optional

import numpy as np

from tb_attention.format import codec


class Layer:
    """One layer's attention: whole (the cbrt8 container the plugin serves) or as each query's top k keys."""

    heads: int
    query_len: int
    key_len: int

    def dense(self) -> bytes:
        raise NotImplementedError

    def _codes(self):
        """(codes uint8 [H, Q, K], row_exp uint8 [H, Q])."""
        raise NotImplementedError

    @property
    def dense_bytes(self):
        return self.heads * self.query_len * (self.key_len + 1)

    def topk(self, k):
        """A "cbrt8-topk" container: each query row's k largest codes and their key indices (frontend/src/notebook/
        lod.ts expands it back to the dense container, zeros elsewhere), and the mean attention mass they hold."""
        codes, row_exp = self._codes()
        index, kept, mass = self._ranked(codes, min(k, self.key_len))
        meta = {"encoding": "cbrt8-topk", "key_len": self.key_len}
        container = codec.pack({"index": index, "codes": kept, "row_exp": row_exp}, meta)
        return container, mass

    def _ranked(self, codes, k):
        """Top-k key indices (int32 [H, Q, k]), their codes, and the mean share of each row's weight they keep. The
        ranking is computed once for the largest k asked and sliced for smaller ones (the budget tries several)."""
        cached = getattr(self, "_top", None)
        if cached is None or cached[0].shape[-1] < k:
            cached = self._top = self._rank(codes, k)
        index, kept = cached[0][..., :k], cached[1][..., :k]
        total = np.stack([_CUBES[codes[h]].sum(-1) for h in range(self.heads)])
        share = _CUBES[kept].sum(-1) / np.maximum(total, 1e-30)
        return np.ascontiguousarray(index), np.ascontiguousarray(kept), float(share.mean())

    def _rank(self, codes, k):
        index = np.empty((self.heads, self.query_len, k), np.int32)
        kept = np.empty((self.heads, self.query_len, k), np.uint8)
        split = self.key_len - k
        for h in range(self.heads):  # one head at a time: argpartition's int64 indices of a whole layer are large
            # Within a row all codes share one scale, so the largest codes are the largest weights.
            top = np.argpartition(codes[h], split, axis=-1)[:, split:] if split > 0 else np.argsort(codes[h], -1)
            vals = np.take_along_axis(codes[h], top, axis=-1)
            order = np.argsort(-vals.astype(np.int16), axis=-1, kind="stable")  # largest first, so [:k] is a top k
            index[h] = np.take_along_axis(top, order, axis=-1)
            kept[h] = np.take_along_axis(vals, order, axis=-1)
        return index, kept


# (code / 255)^3: a weight up to its row's scale, which cancels in a share of the row.
_CUBES = ((np.arange(256) / 255.0) ** 3).astype(np.float32)


class ArrayLayer(Layer):
    """From float weights [H, Q, K] (head_view's arrays, a capture), encoded as the writer encodes them."""

    def __init__(self, weights):
        self.weights = weights
        self.heads, self.query_len, self.key_len = weights.shape
        self._encoded = None

    def _codes(self):
        if self._encoded is None:
            self._encoded = codec.encode_cbrt8(self.weights)
        return self._encoded

    def dense(self):
        codes, row_exp = self._codes()
        return codec.pack({"codes": codes, "row_exp": row_exp}, {"encoding": "cbrt8"})


class StoredLayer(Layer):
    """From a logged step: the stored container, already what the plugin serves."""

    def __init__(self, container):
        self.container = container
        meta, arrays = codec.unpack(container)
        if meta.get("encoding") != "cbrt8" or "codes" not in arrays or arrays["codes"].ndim != 3:
            raise ValueError(f"unknown attention encoding {meta.get('encoding')!r}")
        self.heads, self.query_len, self.key_len = arrays["codes"].shape
        self._arrays = arrays

    def _codes(self):
        return self._arrays["codes"], self._arrays["row_exp"]

    def dense(self):
        return self.container


def qk_container(queries, keys):
    """Queries [H, Q, D] and keys [H_kv, K, D] of one layer as the plugin's `qk` route serves them (float16)."""
    return codec.qk_container(queries, keys)


@dataclasses.dataclass
class Step:
    manifest: dict  # the validated manifest fields: the `tokens` route's answer
    layers: list  # [Layer], one per stored layer
    qk: Optional[list] = None  # [bytes], one `qk` container per layer, or None
    image: Optional[bytes] = None  # the PNG of a ViT probe

    def tokens_json(self):
        return json.dumps(self.manifest, ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclasses.dataclass
class Probe:
    run: str
    tag: str
    steps: dict  # {step: Step}, the steps embedded
    wall_times: dict = dataclasses.field(default_factory=dict)  # {step: wall time}
    head_stats: Optional[bytes] = None  # the `head_stats` route's container, when metrics were logged

    @property
    def last(self):
        return self.steps[max(self.steps)]
