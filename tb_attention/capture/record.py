"""The captured data: one ``LayerRecord`` per attention layer, grouped into streams (self/encoder/decoder/cross)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .verify import verify


@dataclass
class LayerRecord:
    """What one attention layer used in the captured forward pass, restricted to the selected heads.

    ``weights`` is [batch, heads, query_len, key_len]; ``queries`` [batch, heads, query_len, d_head] and ``keys``
    [batch, kv_heads, key_len, d_head] are post-RoPE / post-q/k-norm, keys not repeated for GQA: selected query
    head i reads ``keys[:, kv_map[i]]``. ``heads``/``kv_heads`` are the original head indices.
    ``query_valid``/``key_valid`` [batch, len] are False on padding tokens.
    """

    stream: str
    layer: int
    module_name: str
    heads: list[int]
    weights: torch.Tensor
    query_valid: torch.Tensor
    key_valid: torch.Tensor
    queries: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    kv_heads: list[int] | None = None
    kv_map: list[int] | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # scaling, softcap, sliding_window, sinks, position_bias

    @property
    def has_qk(self) -> bool:
        return self.queries is not None

    def regular_gqa(self) -> bool:
        """True when the stored key heads follow the writer's rule: head i reads key head i // (heads // kv_heads)."""
        if self.kv_map is None:
            return False
        h, g = len(self.kv_map), self.keys.shape[1]
        return h % g == 0 and self.kv_map == [i // (h // g) for i in range(h)]


@dataclass
class VisionInfo:
    """Patch layout of a ViT-style input: tokens [0, num_special) are CLS/registers, then a row-major patch grid."""

    grid: tuple[int, int]
    patch_size: tuple[int, int]
    num_special: int
    images: np.ndarray  # uint8 [batch, height, width, channels], min-max rescaled pixel_values

    def token_labels(self) -> list[str]:
        special = ["[CLS]"] + [f"[REG{i}]" for i in range(self.num_special - 1)]
        rows, cols = self.grid
        return special[: self.num_special] + [f"patch({r},{c})" for r in range(rows) for c in range(cols)]


@dataclass
class Probe:
    """One sequence of one stream, padding removed: the arguments ``AttentionWriter.add_attention`` takes."""

    attentions: list[np.ndarray]  # per layer [heads, query_len, key_len]
    queries: list[np.ndarray] | None
    keys: list[np.ndarray] | None
    query_positions: np.ndarray  # kept (non-padding) positions in the model input
    key_positions: np.ndarray


class Capture:
    """Result of ``tb_attention.capture``: filled when the model runs inside the ``with`` block."""

    def __init__(self, model: torch.nn.Module, layers, heads, dtype: torch.dtype, method: str, session_class=None):
        self.model = model
        self.layers = layers
        self.heads = heads
        self.dtype = dtype
        self._session_class = session_class
        self.method = method  # "attention_interface", "torch_mha" or "output_attentions" (fallback: no q/k)
        self.streams: dict[str, list[LayerRecord]] = {}
        self.vision: VisionInfo | None = None
        self.inputs: tuple[tuple, dict] | None = None  # CPU copy of the last forward's arguments, for verify()

    def __repr__(self) -> str:
        shapes = {name: [r.layer for r in recs] for name, recs in self.streams.items()}
        return f"Capture(method={self.method!r}, layers per stream={shapes})"

    @property
    def batch_size(self) -> int:
        return next(iter(self.streams.values()))[0].weights.shape[0] if self.streams else 0

    @property
    def has_qk(self) -> bool:
        return all(r.has_qk for recs in self.streams.values() for r in recs)

    def normalize_streams(self, seq2seq: bool) -> None:
        """Unless the model has an encoder and a decoder stack, its one self-attention stream (BERT's
        ``encoder``, OPT's ``decoder``) is called "self"."""
        own = [name for name in self.streams if name != "cross"]
        if not seq2seq and len(own) == 1 and own[0] != "self":
            self.streams = {("self" if k == own[0] else k): v for k, v in self.streams.items()}
            for r in self.streams["self"]:
                r.stream = "self"

    def add(self, record: LayerRecord) -> None:
        recs = self.streams.setdefault(record.stream, [])
        recs[:] = [r for r in recs if r.layer != record.layer] + [record]
        recs.sort(key=lambda r: r.layer)

    def probe(self, stream: str | None = None, row: int = 0) -> Probe:
        """Per-layer arrays of one batch row of one stream, with padding tokens removed."""
        recs = self._stream(stream)
        if not 0 <= row < self.batch_size:
            raise ValueError(f"row {row} out of range: the captured batch has {self.batch_size} rows")
        q_keep = recs[0].query_valid[row].nonzero().flatten()
        k_keep = recs[0].key_valid[row].nonzero().flatten()
        attn = [r.weights[row][:, q_keep][:, :, k_keep].numpy() for r in recs]
        queries = keys = None
        if all(r.has_qk for r in recs):
            queries = [r.queries[row][:, q_keep].numpy() for r in recs]
            keys = [r.keys[row][:, k_keep].numpy() for r in recs]
        return Probe(attn, queries, keys, q_keep.numpy(), k_keep.numpy())

    def _stream(self, stream: str | None) -> list[LayerRecord]:
        if not self.streams:
            raise ValueError("nothing was captured: run the model inside the `with tb_attention.capture(...)` block")
        if stream is None:
            if len(self.streams) != 1:
                raise ValueError(f"this capture has several streams {sorted(self.streams)}; pass stream=")
            stream = next(iter(self.streams))
        if stream not in self.streams:
            raise ValueError(f"unknown stream {stream!r}; captured streams: {sorted(self.streams)}")
        return self.streams[stream]

    def verify(self, atol: float = 1e-5):
        """Re-run the captured input with eager attention; see ``tb_attention.capture.verify.verify``."""
        return verify(self, self._session_class, atol=atol)
