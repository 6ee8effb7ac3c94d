"""Per-head metrics (metrics.py's definitions, docs/metrics.md) of weights that arrive one head and one block of
query rows at a time: the writer's q/k-only layers, whose weights are rebuilt from the stored q/k
(analysis/summary.py) and never exist whole (one 32,768-token head is 4 GiB of float32).

`add` takes a block of full rows and runs metrics.py's own code on it. `add_block` takes a block of the summary
pass and gives the same numbers (within float32 rounding) without touching a weight twice: the entropy and the
key mass come from the pass, the largest weights from its top-k, the distance from row sums against a few fixed
vectors, the induction mass from the targets' positions, found once per layer.
"""

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
        # metrics.key_counts without its [Q, K] mask (1 GiB at 32,768 tokens): a causal row i sees i + 1 keys.
        self._keys = np.minimum(np.arange(1, query_len + 1), key_len) if causal else np.full(query_len, key_len)
        self._square = query_len == key_len
        # Token ids instead of strings: the induction targets compare every query with every key, block by block.
        self._tokens = None if tokens is None or not self._square else np.unique(tokens, return_inverse=True)[1]
        self._coords = (query_coords, key_coords)
        self._targets_at = None if self._tokens is None else _induction_targets(self._tokens)
        self._offsets = np.zeros((0, 0), np.float32)  # |r - c| for the keys among a block's own rows

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

    def add_block(self, head: int, block) -> None:
        """One block of `summary.summarise_head`'s pass (a `summary.Block`) of head ``head``."""
        b = block
        if any(c is not None for c in self._coords):  # patch positions: metrics.py's code on the full rows
            full = np.zeros((b.stop - b.start, self.key_len), np.float32)
            full[:, b.lo : b.hi] = b.weights
            self.add(head, b.start, full)
            return
        w, n, width = b.weights, b.stop - b.start, b.hi - b.lo
        rows = np.arange(b.start, b.stop)
        ok = b.mass > 0
        # metrics._prepare's rule: a chunk is renormalised over its keys unless every row's mass is within 1e-3 of
        # 1 (a sink may take more). The entropy of w / m is H(w) / m + ln m.
        scale = np.ones(n, np.float32)
        entropy = b.entropy
        if not np.allclose(b.mass, 1.0, atol=1e-3):
            mass = np.where(ok, b.mass, 1.0)
            scale = (1.0 / mass).astype(np.float32)
            entropy = entropy * scale + np.log(mass)
        found = {"entropy": (entropy, ok)}
        counts = self._keys[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            found["entropy_norm"] = (entropy / np.log(np.maximum(counts, 2)), ok & (counts >= 2))
        found["distance"] = (self._distance(b) * scale, ok)
        kk = min(metrics.TOPK, self.key_len)
        if b.top_weights.shape[1] >= kk:  # the pass's top-k holds these (descending)
            top = b.top_weights[:, :kk]
        else:
            top = np.partition(w, width - kk, axis=1)[:, width - kk :] if width >= kk else w
        found["max_weight"] = ((top[:, 0] if b.top_weights.shape[1] else w.max(axis=1, initial=0)) * scale, ok)
        found["topk_mass"] = (top.sum(axis=1) * scale, ok)
        found["sink_mass"] = ((w[:, 0] if b.lo == 0 and width else np.zeros(n, np.float32)) * scale, ok)
        if self._square:
            found["diagonal"] = (_at(w, rows - b.lo) * scale, ok)
            found["prev_token"] = (_at(w, rows - 1 - b.lo) * scale, ok & (rows >= 1))
            if self._targets_at is not None:
                mass_on, has = _induction(self._targets_at, b)
                found["induction"] = (mass_on * scale, ok & has)
        for name, (values, valid) in found.items():
            i = self._index[name]
            self._sums[i, head] += np.where(valid, values, 0).sum()
            self._counts[i, head] += valid.sum()

    def _distance(self, b) -> np.ndarray:
        """Σ_j w_ij |i − j| of a block's rows, in three key ranges. Left of the rows (j < start): i − j = (i − start)
        + (start − j); right of them (j ≥ stop): j − i = (j − stop + 1) + (stop − 1 − i). All terms are ≥ 0 (no
        cancellation) and the sums over j are dot products with fixed vectors; |i − j| among the rows is a table."""
        w, start, stop, lo, hi = b.weights, b.start, b.stop, b.lo, b.hi
        rows = np.arange(start, stop, dtype=np.float32)
        out = np.zeros(stop - start, np.float32)
        left, right = min(hi, start), max(lo, stop)
        if left > lo:
            part = w[:, : left - lo]
            out += (rows - start) * part.sum(axis=1) + part @ (start - np.arange(lo, left, dtype=np.float32))
        if hi > right:
            part = w[:, right - lo :]
            out += (stop - 1 - rows) * part.sum(axis=1) + part @ np.arange(
                right - stop + 1, hi - stop + 1, dtype=np.float32
            )
        a, c = max(lo, start), min(hi, stop)
        if c > a:
            n = stop - start
            if self._offsets.shape[0] < n:
                r = np.arange(n)
                self._offsets = np.abs(r[:, None] - r[None, :]).astype(np.float32)
            out += np.vecdot(w[:, a - lo : c - lo], self._offsets[:n, a - start : c - start])
        return out

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


TARGETS_MAX = 1 << 22  # induction (query, key) pairs listed per layer (32 MiB); beyond, blocks compare tokens


def _at(w: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """w[r, cols[r]] per row, 0 where cols[r] is outside the block."""
    inside = (cols >= 0) & (cols < w.shape[1])
    out = np.zeros(w.shape[0], np.float32)
    r = np.flatnonzero(inside)
    out[r] = w[r, cols[r]]
    return out


def _induction_targets(ids: np.ndarray):
    """(ids, first position of each id, CSR row pointers [Q + 1], keys) of metrics.induction_targets: key j is a
    target of query i when j < i and ids[j − 1] == ids[i], i.e. j = p + 1 for every earlier p ≤ i − 2 with the
    same id. Pointers and keys are None when there are more than TARGETS_MAX pairs (a long, repetitive probe)."""
    n = len(ids)
    order = np.argsort(ids, kind="stable")  # positions grouped by id, ascending within a group
    sid = ids[order]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    first_seen = np.full(int(ids.max(initial=-1)) + 1, n, np.int64)
    first_seen[sid[starts]] = order[starts]
    group = np.repeat(starts, np.diff(np.r_[starts, n]))  # each sorted position's group start
    earlier = np.arange(n) - group  # occurrences before it
    adjacent = (earlier > 0) & (order - np.r_[-2, order[:-1]] == 1)  # the one right before: j = i is no target
    count = earlier - adjacent
    total = int(count.sum())
    if total > TARGETS_MAX:
        return ids, first_seen, None, None
    query = np.repeat(order, count)
    within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    keys = order[np.repeat(group, count) + within] + 1
    by_query = np.argsort(query, kind="stable")
    ptr = np.r_[0, np.cumsum(np.bincount(query, minlength=n))]
    return ids, first_seen, ptr, keys[by_query]


def _induction(targets, b):
    """(Σ of w over each row's induction targets, whether the row has any) for a block; ``targets`` from
    `_induction_targets`."""
    ids, first_seen, ptr, keys = targets
    rows = np.arange(b.start, b.stop)
    has = first_seen[ids[rows]] <= rows - 2  # a target j needs token[j - 1] == token[i], j - 1 < i - 1
    if ptr is None:  # too many targets to list: compare the tokens of the block's rows with every key's
        j = np.arange(max(b.lo, 1), b.hi)
        hits = (ids[rows][:, None] == ids[j - 1][None, :]) & (j[None, :] < rows[:, None])
        return np.where(hits, b.weights[:, j[0] - b.lo :] if j.size else b.weights[:, :0], 0).sum(axis=1), has
    j = keys[ptr[b.start] : ptr[b.stop]]
    r = np.repeat(np.arange(b.stop - b.start), np.diff(ptr[b.start : b.stop + 1]))
    inside = (j >= b.lo) & (j < b.hi)
    r, j = r[inside], j[inside]
    return np.bincount(r, weights=b.weights[r, j - b.lo], minlength=b.stop - b.start), has
