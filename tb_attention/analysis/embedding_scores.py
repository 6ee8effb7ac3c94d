"""How far a Q/K embedding picture can be trusted: faithfulness (per-query Spearman of 2-D distance vs q·k) and q/k
mixing (docs/embedding.md, "Faithfulness score"). numpy only.

Scores are computed on a documented, deterministic sample once a head is large: at most `SCORE_QUERIES` evenly
spaced queries (every query of the batch below that), each against every key it may attend to, and mixing on at
most `MIXING_POINTS` evenly spaced points. A head's 1,000 query rows cost ~0.25 s per score on a 2-core machine
(two argsorts of a 1,000 x 1,000 block), which made the 72-head matrix take 25-28 s (issue 12); 256 rows cost a
quarter of that, and the mean over 256 rows of a Spearman in [-1, 1] has a standard error below 0.06.
"""

import numpy as np

SCORE_QUERIES = 256  # queries scored per head beyond this: evenly spaced, first and last included
MIXING_POINTS = 600  # points whose nearest neighbours the mixing score counts: evenly spaced over queries + keys


def score_rows(nq, limit=None):
    """The queries a head's scores use: None (every query) for nq <= limit, else `limit` evenly spaced indices
    round(j·(nq−1)/(limit−1)), j = 0..limit−1 (distinct, ascending; the first and the last query included)."""
    limit = SCORE_QUERIES if limit is None else limit
    if nq <= limit:
        return None
    return np.rint(np.arange(limit) * ((nq - 1) / (limit - 1))).astype(np.int64)


def sample_info(nq):
    """What `meta` says about the scores' sample for a head of nq queries (the routes and the notebook)."""
    rows = score_rows(nq)
    return {"score_queries": int(nq if rows is None else len(rows)), "score_sampled": rows is not None}


def _ranks(x):  # the inverse of one argsort, scattered: a second argsort was most of a score's time
    order, ranks = np.argsort(x, -1), np.empty(x.shape, np.int64)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(x.shape[-1]), x.shape), -1)
    return ranks


def _row_spearman(s, d2, allowed):
    """Per row of [..., m] blocks: Spearman between -d2 and s over allowed entries; NaN for rows with < 3."""
    r_s, r_d = _ranks(np.where(allowed, -s, np.inf)), _ranks(np.where(allowed, d2, np.inf))
    sq = np.where(allowed, (r_s - r_d).astype(np.float64) ** 2, 0).sum(-1)
    c = allowed.sum(-1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c >= 3, 1 - 6 * sq / (c * (c * c - 1)), np.nan)


def faithfulness(head, qpos, kpos, per_query=False, block=2_000_000, rows=None):
    """Mean over queries of the Spearman correlation between -distance(q_i, k_j) and q_i·k_j over the keys
    q_i may attend to (its own probe, mask); rows with fewer than 3 keys are skipped. 1 = distance ranks every
    query's keys exactly as attention does; 0 = unrelated. qpos/kpos: [Nq, d] and [Nk, d] in any dimension.
    rows: the query indices to score (ascending; `score_rows`), or None for every query. Short probes are padded
    into one [P, n, m] block (one vectorised argsort); long ones and samples go probe by probe in row blocks.
    """
    qpos = np.asarray(qpos, np.float64)
    kpos = np.asarray(kpos, np.float64)
    q64, k64 = head.q.astype(np.float64), head.k.astype(np.float64)

    def block_rho(qi, ki, allowed):
        # matmul, not einsum: BLAS is 5x faster on these [n, d] x [d, m] products (the largest cost after sorting).
        s = q64[qi] @ np.swapaxes(k64[ki], -1, -2)
        a, b = qpos[qi], kpos[ki]
        d2 = np.sum(a * a, -1)[..., :, None] + np.sum(b * b, -1)[..., None, :] - 2 * (a @ np.swapaxes(b, -1, -2))
        return _row_spearman(s, d2, allowed)

    qi, ki, allowed = head.padded()
    if rows is None and not getattr(head, "_padded_too_big", False) and allowed.size <= block:
        rho = block_rho(qi, ki, allowed)[head.padded_rows()]
    else:
        parts = []
        for gq, gk, mask in head.groups:
            local = np.arange(len(gq)) if rows is None else np.flatnonzero(np.isin(gq, rows))
            # A sample goes 32 rows at a time, each block cut to the keys one of its rows may see: under a causal
            # mask, evenly spaced rows see half the keys on average, and sorting the others was half the cost.
            step = max(1, block // max(len(gk), 1)) if rows is None or mask is None else 32
            for lo in range(0, len(local), step):
                sel = local[lo : lo + step]
                if mask is None:
                    parts.append(block_rho(gq[sel], gk, np.ones((len(sel), len(gk)), bool)))
                    continue
                m = mask[sel]
                cols = np.flatnonzero(m.any(0)) if rows is not None else slice(None)
                parts.append(block_rho(gq[sel], gk[cols], m[:, cols]))
        rho = np.concatenate(parts) if parts else np.zeros(0)
    rho = rho[np.isfinite(rho)]
    if per_query:
        return rho
    return float(rho.mean()) if len(rho) else float("nan")


def cosine_faithfulness(head, qn, kn, rows=None):
    """As `faithfulness`, with cosine distance (AttentionViz's metric) between the given vectors."""
    qn = np.asarray(qn, np.float64)
    kn = np.asarray(kn, np.float64)
    qn = qn / (np.linalg.norm(qn, axis=1, keepdims=True) + 1e-12)
    kn = kn / (np.linalg.norm(kn, axis=1, keepdims=True) + 1e-12)
    return faithfulness(head, qn, kn, rows=rows)


def mixing(y, nq, neighbours=10, max_points=MIXING_POINTS):
    """How mixed queries and keys are in a layout: the mean fraction of each point's nearest neighbours that are
    of the other kind, divided by the fraction expected if kinds were placed at random. ~1 = mixed, ~0 =
    separate islands."""
    y = np.asarray(y, np.float64)
    kind = np.arange(len(y)) >= nq
    if len(y) > max_points:  # deterministic subsample keeps this O(max_points^2)
        idx = np.linspace(0, len(y) - 1, max_points).astype(np.int64)
        y, kind = y[idx], kind[idx]
    n = len(y)
    kk = min(neighbours, n - 1)
    if kk < 1 or kind.all() or not kind.any():
        return float("nan")
    sq = np.sum(y * y, 1)
    other = np.empty(n)
    for start in range(0, n, 1024):
        block = sq[start : start + 1024, None] + sq[None, :] - 2 * y[start : start + 1024] @ y.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nn = np.argpartition(block, kk, axis=1)[:, :kk]
        other[start : start + len(block)] = (kind[nn] != kind[start : start + len(block), None]).mean(1)
    n_other = np.where(kind, (~kind).sum(), kind.sum()).astype(np.float64)
    expected = n_other / (n - 1)
    return float(np.mean(other) / np.mean(expected))


def scores(head, y, qn, kn):
    """{"faithfulness": 2-D score, "original": score in the normalised D-dim space (qn, kn), "mixing": q/k mixing,
    and the sample they used (`sample_info`)}; both faithfulness scores on the same `score_rows` queries."""
    nq = len(head.q)
    rows = score_rows(nq)
    return {
        "faithfulness": faithfulness(head, y[:nq], y[nq:], rows=rows),
        "original": faithfulness(head, qn, kn, rows=rows),
        "mixing": mixing(y, nq),
        **sample_info(nq),
    }
