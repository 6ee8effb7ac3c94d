"""Per-head metrics (metrics.py, the same definitions and code) of weights that arrive one head and one block of
query rows at a time: the writer's q/k-only layers, whose weights are rebuilt from the stored q/k
(analysis/recompute.py) and never exist whole (one 32,768-token head is 4 GiB of float32)."""

from typing import Optional

import numpy as np

from tb_attention.analysis import metrics


class HeadMetrics:
    """Sums and valid-row counts of every metric in ``metrics.NAMES`` for ``num_heads`` heads of one layer.

    ``causal``: the probe is causal (what ``metrics.compute`` detects from the weights; here the caller knows it from
    the layer's mask). ``tokens`` [Q] (ids or strings) enable the induction score; ``query_coords``/``key_coords``
    as for ``metrics.compute``. A stored probe has no padding, so there are no masks.
    """

    def __init__(self, num_heads, query_len, key_len, *, causal=False, tokens=None, query_coords=None, key_coords=None):
        self.query_len, self.key_len = query_len, key_len
        self._index = {name: i for i, name in enumerate(metrics.NAMES)}
        self._sums = np.zeros((len(metrics.NAMES), num_heads))
        self._counts = np.zeros((len(metrics.NAMES), num_heads))
        self._keys = metrics.key_counts((query_len, key_len), None, bool(causal))  # [Q]
        self._square = query_len == key_len
        # Token ids instead of strings: the induction targets compare every query with every key, block by block.
        self._tokens = None if tokens is None or not self._square else np.unique(tokens, return_inverse=True)[1]
        self._coords = (query_coords, key_coords)

    def add(self, head: int, start: int, w: np.ndarray) -> None:
        """Weights ``w`` [r, K] of query rows ``start .. start + r`` of head ``head``."""
        rows = np.arange(start, start + w.shape[0])
        qc, kc = self._coords
        offsets = None
        if qc is None and kc is None:
            offsets = np.abs(rows[:, None] - np.arange(self.key_len)[None, :]).astype(np.float32)
        metrics._chunk(
            w[None, None],
            head,
            self._sums,
            self._counts,
            self._index,
            None,
            None,
            self._keys[rows],
            offsets,
            self._targets(rows),
            None,
            rows >= 1,
            None if qc is None else np.asarray(qc)[rows],
            kc,
            r0=start,
            square=self._square,
        )

    def _targets(self, rows) -> Optional[np.ndarray]:
        """metrics.induction_targets for these rows only: key j of query i when j < i and token[j-1] == token[i]."""
        if self._tokens is None:
            return None
        t = self._tokens
        targets = np.zeros((len(rows), self.key_len), bool)
        targets[:, 1:] = t[rows][:, None] == t[None, :-1]
        targets &= np.arange(self.key_len)[None, :] < rows[:, None]
        return targets[None, None]

    def values(self) -> dict:
        """{name: float32 [H]}: each head's mean over its valid rows, NaN where it has none."""
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(self._counts > 0, self._sums / np.maximum(self._counts, 1), np.nan)
        return {name: means[i].astype(np.float32) for name, i in self._index.items()}
