"""Attention rows that do not sum to 1: logged anyway, with one warning per tag naming the worst row.

Softmax probabilities sum to 1 per query row. Sigmoid scores, probabilities transposed to [heads, keys, queries]
or weights of a subset of the keys do not, and every view and metric would silently misread them. The check reads
every weight, so it runs on the writer's background thread (no cost on the training thread); the warning names the
tag, so it does not need to point at the caller's line.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

# float16/bfloat16 softmax rounds each weight by at most 2**-8 of itself, so a real row sum is off by < 0.4 %.
TOLERANCE = 0.02


def worst_row(attention, query_mask=None, partial=False):
    """-> (row sum, index tuple of the row) of the row furthest outside what is allowed, or None if all are fine.

    attention: [L, H, Q, K] or [L, B, H, Q, K]; query_mask: None, [Q] or [B, Q] (False rows are not checked).
    partial: rows may sum to less than 1 (attention sinks: part of the mass goes to a logit that is not a key).
    """
    sums = attention.sum(axis=-1)  # [L, H, Q] or [L, B, H, Q]
    gap = sums - 1.0
    gap = np.maximum(gap, 0.0) if partial else np.abs(gap)
    if query_mask is not None:
        mask = np.asarray(query_mask, bool)
        gap = np.where(mask[:, None, :] if mask.ndim == 2 else mask, gap, 0.0)
    index = np.unravel_index(int(np.argmax(gap)), gap.shape)
    if not gap[index] > TOLERANCE:
        return None
    return float(sums[index]), tuple(int(i) for i in index)


class RowSumCheck:
    """Per-tag state: which tags may have partial rows (set by the caller), which were warned about."""

    def __init__(self):
        self._partial: set[str] = set()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def allow_partial(self, tag, partial_rows):
        """Training thread: `partial_rows=True` once is remembered for the tag (its metrics calls need not repeat it)."""
        if partial_rows:
            with self._lock:
                self._partial.add(tag)

    def check(self, tag, attention, query_mask=None):
        """Background thread: warns the first time a step of `tag` has a row outside what is allowed."""
        with self._lock:
            if tag in self._warned:
                return
            partial = tag in self._partial
        found = worst_row(attention, query_mask, partial)
        if found is None:
            return
        with self._lock:
            if tag in self._warned:
                return
            self._warned.add(tag)
        total, index = found
        where = ", ".join(f"{name} {i}" for name, i in zip(_names(len(index)), index))
        expected = "at most 1 (partial_rows=True)" if partial else "1"
        warnings.warn(
            f"tb-attention: attention rows of {tag!r} should sum to {expected}, but {where} sums to {total:.4g}; "
            "pass softmax probabilities as [heads, query_len, key_len] per layer (not sigmoid scores, not "
            "transposed), or partial_rows=True if part of each row rightly goes elsewhere (attention sinks). "
            "Logged anyway; this warning is shown once per tag.",
            UserWarning,
            stacklevel=2,
        )


def _names(rank):
    return ("layer", "head", "query") if rank == 3 else ("layer", "batch row", "head", "query")
