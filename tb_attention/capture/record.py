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
    ``query_valid``/``key_valid`` [batch, len] are False on padding tokens. ``layer`` is the call's position in
    its stream during the forward pass (a shared or looped module gives one layer per call).

    Recompute parameters (what a reader holding only q/k needs to reproduce ``weights``, see ``recompute()``):
    ``extras["scaling"]``, ``extras["softcap"]``, ``extras["sinks"]`` (per selected head, or None); the mask as
    ``mask_kind`` ("none", "causal", "sliding", "prefix" or "tensor", see ``masks.py``) with ``mask_params``
    (``offset``: key index of query 0's own position, ``window``, ``prefix`` per batch row) on top of
    ``key_valid``, and the mask itself in ``mask`` ([batch|1, 1|heads, Q, K] bool, True = attend) only for
    "tensor"; ``position_bias`` ([batch|1, heads|1, Q, K], added to the logits: T5's buckets, relative-position
    scores, ALiBi) when the model added one. These are kept only when q/k are.
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
    extras: dict[str, Any] = field(default_factory=dict)  # scaling, softcap, sliding_window, sinks, implementation
    mask_kind: str | None = None
    mask_params: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    position_bias: torch.Tensor | None = None
    # capture(model, weights=False): ``weights`` is None; these are the real weights (float32, from the unrounded
    # q/k and the real mask) of query positions ``check_rows`` only, [batch, heads, len(check_rows), key_len].
    check_rows: np.ndarray | None = None
    check_weights: torch.Tensor | None = None

    @property
    def has_qk(self) -> bool:
        return self.queries is not None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(batch, heads, query_len, key_len), also when the weights were never materialised (weights=False)."""
        if self.weights is not None:
            return tuple(self.weights.shape)  # type: ignore[return-value]
        b, h, q = self.queries.shape[:3]
        return b, h, q, self.keys.shape[2]

    def recompute(self) -> torch.Tensor:
        """The weights rebuilt from the stored q/k and recompute parameters alone (float32, padding rows zero)."""
        from .masks import allowed_mask, to_additive
        from .weights import attention_probs

        if not self.has_qk or self.mask_kind is None:
            raise ValueError(f"{self.module_name}: no queries/keys or recompute parameters were recorded")
        q_len, k_len = self.queries.shape[2], self.keys.shape[2]
        if self.mask_kind == "tensor":
            allowed = self.mask
        else:
            allowed = allowed_mask(self.mask_kind, self.mask_params, self.key_valid, q_len, k_len)
        sinks = self.extras.get("sinks")
        weights = attention_probs(
            self.queries.float(),
            self.keys.float(),
            self.kv_map,
            self.extras["scaling"],
            to_additive(allowed, None),
            self.extras.get("softcap"),
            None if self.position_bias is None else self.position_bias.float(),
            None if sinks is None else torch.as_tensor(sinks),
        )
        return weights.masked_fill_(~self.query_valid[:, None, :, None], 0.0)

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

    attentions: list[np.ndarray] | None  # per layer [heads, query_len, key_len]; None: a weights=False capture
    queries: list[np.ndarray] | None
    keys: list[np.ndarray] | None
    query_positions: np.ndarray  # kept (non-padding) positions in the model input
    key_positions: np.ndarray
    # weights=False: (rows among the kept queries, per layer [heads, len(rows), key_len]), add_attention's check=
    check: tuple | None = None


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
        self.visions: dict[str, VisionInfo] = {}  # per stream of image patches (a ViT, a vision tower)
        self.inputs: tuple[tuple, dict] | None = None  # CPU copy of the last forward's arguments, for verify()

    def __repr__(self) -> str:
        shapes = {name: [r.layer for r in recs] for name, recs in self.streams.items()}
        return f"Capture(method={self.method!r}, layers per stream={shapes})"

    @property
    def batch_size(self) -> int:
        return next(iter(self.streams.values()))[0].shape[0] if self.streams else 0

    @property
    def has_qk(self) -> bool:
        return all(r.has_qk for recs in self.streams.values() for r in recs)

    @property
    def has_weights(self) -> bool:
        """False for ``capture(model, weights=False)``: only q/k and a few check rows of the weights were kept."""
        return all(r.weights is not None for recs in self.streams.values() for r in recs)

    @property
    def vision(self) -> VisionInfo | None:
        """The patch layout of the image stream, when the capture has exactly one (a ViT, a CLIP vision tower)."""
        return next(iter(self.visions.values())) if len(self.visions) == 1 else None

    def add(self, record: LayerRecord) -> None:
        recs = self.streams.setdefault(record.stream, [])
        recs[:] = [r for r in recs if r.layer != record.layer] + [record]
        recs.sort(key=lambda r: r.layer)

    def probe(self, stream: str | None = None, row: int = 0, records: list[LayerRecord] | None = None) -> Probe:
        """Per-layer arrays of one batch row of one stream (or of some of its ``records``), padding removed."""
        recs = records if records is not None else self._stream(stream)
        if not 0 <= row < self.batch_size:
            raise ValueError(f"row {row} out of range: the captured batch has {self.batch_size} rows")
        q_keep = recs[0].query_valid[row].nonzero().flatten()
        k_keep = recs[0].key_valid[row].nonzero().flatten()
        queries = keys = None
        if all(r.has_qk for r in recs):
            queries = [r.queries[row][:, q_keep].numpy() for r in recs]
            keys = [r.keys[row][:, k_keep].numpy() for r in recs]
        if any(r.weights is None for r in recs):
            return Probe(None, queries, keys, q_keep.numpy(), k_keep.numpy(), _check(recs, row, q_keep, k_keep))
        attn = [r.weights[row][:, q_keep][:, :, k_keep].numpy() for r in recs]
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
        """Re-run the captured input with eager attention; see ``tb_attention.capture.verify.verify``. Works for
        weights=False captures too: both of its runs compute full weights (of every selected layer, so mind long
        inputs)."""
        return verify(self, self._session_class, atol=atol)


def _check(recs, row: int, q_keep: torch.Tensor, k_keep: torch.Tensor) -> tuple | None:
    """The check rows of a weights=False capture that are real tokens of batch row ``row``, in the stored tokens'
    coordinates (padding removed), with their weights over the kept keys."""
    rows = recs[0].check_rows
    if rows is None:
        return None
    kept = np.isin(rows, q_keep.numpy())
    stored = np.searchsorted(q_keep.numpy(), rows[kept])
    if not len(stored):
        return None
    sel = torch.as_tensor(np.flatnonzero(kept))
    return stored, [r.check_weights[row][:, sel][:, :, k_keep].numpy() for r in recs]
