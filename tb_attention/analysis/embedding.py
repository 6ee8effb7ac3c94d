"""Joint query-key embedding of one head (AttentionViz, Yeh et al. 2023), stable across training steps.

Math and design: docs/embedding.md. Everything here is numpy only; t-SNE (scikit-learn) and UMAP (umap-learn) are
imported lazily, so the plugin works without them (PCA and the faithful layout only).

A *head* is the point cloud of all queries and all keys of a probe batch (several probes, one sequence each).
A query may only be compared with the keys of its own probe that its attention row allows (mask), as in
AttentionViz: nearness across probes means nothing about real attention.
"""

import contextlib
import dataclasses

import numpy as np

from tb_attention.analysis import embedding_scores
from tb_attention.analysis.embedding_scores import cosine_faithfulness, faithfulness, mixing  # noqa: F401 (API)

METHODS = ("pca", "faithful", "tsne", "umap")
NONLINEAR = ("faithful", "tsne", "umap")
# Beyond this many query + key points a head is laid out on a deterministic sample of them (`point_sample`): the
# faithful layout's pairs and a scatter's draw grow with the points, and 20,000 squares of 3 px already cover the
# single-head canvas (620 px) several times over.
MAX_POINTS = 20_000


def point_sample(nq, nk, limit=None):
    """(query indices, key indices) of a head's layout: None for nq + nk <= limit (every point), else about `limit`
    points split between queries and keys in proportion, each evenly spaced (first and last included)."""
    limit = MAX_POINTS if limit is None else limit
    if nq + nk <= limit:
        return None
    sq = max(2, min(nq, round(limit * nq / (nq + nk))))
    sk = max(2, min(nk, limit - sq))

    def even(n, m):
        return np.rint(np.arange(m) * ((n - 1) / max(m - 1, 1))).astype(np.int64) if m < n else np.arange(n)

    return even(nq, sq), even(nk, sk)


def one_blas_thread():
    """Context manager: BLAS/LAPACK on one thread while it is active (threadpoolctl, when installed).

    Our matrices are tiny (d x d covariances, d <= 256): a multithreaded LAPACK call costs more in thread
    hand-offs than in arithmetic, and on a loaded 2-core machine 50x more (measured: eigh of 32 x 32 at 12 ms
    instead of 0.2 ms). The limit is process-wide while active, which is harmless for TensorBoard.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class MissingDependencyError(RuntimeError):
    """An optional projection library is not installed; the message says what to install."""


@dataclasses.dataclass
class Head:
    """The vectors of one head over a probe batch.

    q: float [Nq, D]; k: float [Nk, D] (the key head this query head reads, GQA keys already selected);
    q_probe/k_probe: int [Nq]/[Nk], which probe each vector belongs to, vectors of one probe contiguous and in
    position order; masks: one bool [nq_p, nk_p] per probe (True = the query may attend to the key), or None
    for "every key of the same probe". index: which points of the whole head these are when they are a sample
    (`point_sample`; queries first, keys numbered after every query), None for all of them.
    """

    q: np.ndarray
    k: np.ndarray
    q_probe: np.ndarray
    k_probe: np.ndarray
    masks: list = None
    index: "np.ndarray | None" = None

    def __post_init__(self):
        self.q = np.asarray(self.q, np.float32)
        self.k = np.asarray(self.k, np.float32)
        self.q_probe = np.asarray(self.q_probe, np.int64)
        self.k_probe = np.asarray(self.k_probe, np.int64)
        if self.q.ndim != 2 or self.k.ndim != 2 or self.q.shape[1] != self.k.shape[1]:
            raise ValueError(f"queries {self.q.shape} and keys {self.k.shape} must be [N, D] with the same D")
        if self.q_probe.shape != (len(self.q),) or self.k_probe.shape != (len(self.k),):
            raise ValueError("one probe index per query and per key")
        self._groups = []
        probes = np.unique(np.concatenate([self.q_probe, self.k_probe]))
        for n, p in enumerate(probes):
            qi, ki = np.flatnonzero(self.q_probe == p), np.flatnonzero(self.k_probe == p)
            mask = None if self.masks is None else np.asarray(self.masks[n], bool)
            if mask is not None and mask.shape != (len(qi), len(ki)):
                raise ValueError(f"mask of probe {n} is {mask.shape}, expected {(len(qi), len(ki))}")
            self._groups.append((qi, ki, mask))

    def padded(self):
        """(query index [P, n], key index [P, m], allowed [P, n, m]): every probe padded to the longest one
        (padding repeats index 0 and is never allowed)."""
        if getattr(self, "_padded", None) is None:
            n = max((len(g[0]) for g in self._groups), default=0)
            m = max((len(g[1]) for g in self._groups), default=0)
            P = len(self._groups)
            if P * n * m > 2_000_000:  # long probes: callers go probe by probe instead
                self._padded = (np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64), np.zeros((0, 0, 0), bool))
                self._rows = np.zeros((0, 0), bool)
                self._padded_too_big = True
                return self._padded
            qi, ki = np.zeros((P, n), np.int64), np.zeros((P, m), np.int64)
            allowed, rows = np.zeros((P, n, m), bool), np.zeros((P, n), bool)
            for p, (q, k, mask) in enumerate(self._groups):
                qi[p, : len(q)], ki[p, : len(k)], rows[p, : len(q)] = q, k, True
                allowed[p, : len(q), : len(k)] = True if mask is None else mask
            self._padded, self._rows = (qi, ki, allowed), rows
        return self._padded

    def padded_rows(self):
        """bool [P, n]: which padded query slots are real queries."""
        self.padded()
        return self._rows

    @property
    def groups(self):
        """[(query indices, key indices, mask or None)] per probe."""
        return self._groups

    def subset(self, qsel, ksel):
        """The head restricted to queries `qsel` and keys `ksel` (ascending indices), masks cut to match."""
        masks = None
        if self.masks is not None:
            masks = []
            for qi, ki, mask in self._groups:
                rq, rk = np.flatnonzero(np.isin(qi, qsel)), np.flatnonzero(np.isin(ki, ksel))
                if len(rq) or len(rk):  # a probe left with no point is no group of the subset
                    masks.append(np.ones((len(rq), len(rk)), bool) if mask is None else mask[np.ix_(rq, rk)])
        return Head(self.q[qsel], self.k[ksel], self.q_probe[qsel], self.k_probe[ksel], masks)

    def points(self, q=None, k=None):
        """[Nq + Nk, D]: queries first, then keys (the order of every layout)."""
        return np.concatenate([self.q if q is None else q, self.k if k is None else k])


# -- the two attention-preserving normalisations -----------------------------------------------------------
def normalise(q, k, translate=True, scale=True):
    """Returns (q', k', info). Both steps leave every softmax(q·k) row unchanged (docs/embedding.md).

    scale: q' = c q, k' = k / c with c = sqrt(spread(k) / spread(q)), spread = RMS distance to the centroid,
        so both clouds get the same spread sqrt(spread(q) spread(k)); every logit q·k is unchanged.
    translate (after scaling): k' += mean(q') - mean(k'), so the centroids coincide; each query's logits all
        move by the same constant q·v, which softmax ignores.
    """
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    c = 1.0
    if scale:
        sq = np.sqrt(np.mean(np.sum((q - q.mean(0)) ** 2, 1)))
        sk = np.sqrt(np.mean(np.sum((k - k.mean(0)) ** 2, 1)))
        if sq > 0 and sk > 0:
            c = float(np.sqrt(sk / sq))
        q, k = q * c, k / c
    shift = np.zeros(q.shape[1])
    if translate:
        shift = q.mean(0) - k.mean(0)
        k = k + shift
    return q, k, {"scale": c, "shift_norm": float(np.linalg.norm(shift))}


# -- projections -------------------------------------------------------------------------------------------
def pca(points, dims=2):
    """Centred PCA through the D x D covariance (fast for D << N); signs fixed so the largest loading is > 0."""
    x = np.asarray(points, np.float64)
    x = x - x.mean(0)
    cov = x.T @ x / max(len(x) - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    basis = vecs[:, ::-1][:, :dims]
    basis *= np.where(basis[np.abs(basis).argmax(0), np.arange(dims)] < 0, -1.0, 1.0)
    return x @ basis


def procrustes(y, ref):
    """y rotated/reflected (no scaling) about its centroid to best match ref (same point order), moved onto
    ref's centroid. A fixed cloud stays fixed; a rotated copy comes back exactly."""
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    yc, rc = y.mean(0), ref.mean(0)
    u, _, vt = np.linalg.svd((y - yc).T @ (ref - rc))
    return (y - yc) @ (u @ vt) + rc


def _pairs(head, max_keys=128, keep_top=32):
    """Allowed (query, key) pairs and, per pair, the key's rank position in its query's q·k ordering in [0, 1].

    Rows with more than `max_keys` allowed keys (long sequences) keep their `keep_top` highest keys and an evenly
    spaced sample of the rest, so the cost stays O(queries * max_keys).
    """
    qs, ks, us = [], [], []
    for qi, ki, mask in head.groups:
        for lo in range(0, len(qi), 256):  # row blocks bound the memory of long sequences
            rows_q = qi[lo : lo + 256]
            s = head.q[rows_q].astype(np.float64) @ head.k[ki].astype(np.float64).T
            allowed = np.ones(s.shape, bool) if mask is None else mask[lo : lo + 256]
            s = np.where(allowed, s, -np.inf)
            rank = np.argsort(np.argsort(-s, 1), 1)  # 0 = highest logit
            count = allowed.sum(1, keepdims=True)
            u = rank / np.maximum(count - 1, 1)
            keep = allowed
            if count.max() > max_keys:
                stride = np.maximum(1, -(-(count - keep_top) // max(1, max_keys - keep_top)))
                keep = allowed & ((rank < keep_top) | ((rank - keep_top) % stride == 0))
            rows, cols = np.nonzero(keep)
            qs.append(rows_q[rows])
            ks.append(ki[cols])
            us.append(u[rows, cols])
    if not qs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(qs), np.concatenate(ks), np.concatenate(us)


def faithful(head, init, anchor=None, iters=100, anchor_weight=0.05, progress=None):
    """Refines a 2-D layout so that, for every query, distance to its allowed keys grows with their q·k rank.

    Minimises sum over allowed pairs (d(q_i, k_j) - b * u_ij)^2 + anchor_weight * (pairs / points) *
    sum over points |y - anchor|^2, where u_ij in [0, 1] is the rank of k_j in q_i's row (0 = largest q·k) and
    b the median query-key distance of the start layout: each query sits on its top key and its other keys at
    distances that grow with their rank, so queries and keys mix. The anchor (the aligned PCA layout) keeps
    global structure and step-to-step stability. Deterministic, numpy only, O(pairs) per iteration (momentum
    gradient descent; it has converged to within 0.005 of its score after ~100 steps on MiniLM heads).
    """
    nq = len(head.q)
    y = np.array(init, np.float64)
    anchor = y.copy() if anchor is None else np.asarray(anchor, np.float64)
    qi, kj, u = _pairs(head)
    kj = kj + nq
    n = len(y)
    d0 = np.linalg.norm(y[qi] - y[kj], axis=1)
    b = float(np.median(d0)) if len(d0) else 1.0
    target = (b if b > 0 else 1.0) * u
    lam = anchor_weight * len(u) / n  # per-point weight comparable to the pair term
    degree = np.bincount(np.concatenate([qi, kj]), minlength=n).max() if len(u) else 0
    lr = 0.5 / (degree + lam + 1e-9)
    velocity = np.zeros_like(y)
    grad = np.empty_like(y)
    # One contiguous array per coordinate: gathering rows of an [n, 2] array by index was 3/4 of an iteration.
    cols = [np.ascontiguousarray(y[:, c]) for c in range(2)]
    for it in range(iters):
        diff = [col[qi] - col[kj] for col in cols]
        d = np.sqrt(diff[0] * diff[0] + diff[1] * diff[1]) + 1e-9
        w = (d - target) / d
        for c in range(2):
            g = w * diff[c]
            grad[:, c] = np.bincount(qi, g, minlength=n) - np.bincount(kj, g, minlength=n)
        grad += lam * (np.stack(cols, 1) - anchor)
        velocity = 0.8 * velocity - lr * grad
        for c in range(2):
            cols[c] += velocity[:, c]
        if progress is not None and it % 25 == 0:
            progress(it / iters)
    return np.stack(cols, 1)


def tsne(points, init, perplexity=30.0, warm=False):
    """scikit-learn Barnes-Hut t-SNE initialised from `init`.

    Cold (init = aligned PCA): the usual early exaggeration (12, 250 iterations) then 150 more. Warm (init = the
    previous step's t-SNE layout): no exaggeration, 250 iterations, so the previous layout is refined rather than
    rebuilt.
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise MissingDependencyError("t-SNE needs scikit-learn: pip install 'tb-attention[embedding]'") from None
    init = np.asarray(init, np.float64)
    # Cold: sklearn's own PCA-init scale (std 1e-4). Warm: std 10, about a converged layout's scale, so the
    # previous layout is refined in place (measured: half the time and 30 % less step-to-step motion than cold).
    init = (init - init.mean(0)) / (np.std(init[:, 0]) + 1e-12) * (10.0 if warm else 1e-4)
    model = TSNE(
        n_components=2,
        perplexity=min(perplexity, (len(points) - 1) / 3),
        init=init,
        learning_rate="auto",
        max_iter=250 if warm else 400,
        early_exaggeration=1.0 if warm else 12.0,
        random_state=0,
        n_jobs=1,
    )
    return model.fit_transform(np.asarray(points, np.float32))


def umap(points, init, n_epochs=100):
    """umap-learn (optional) initialised from `init`; a fixed seed, so one thread."""
    try:
        import umap as umap_module  # noqa: PLC0415 (lazy: numba is slow to import and JIT-compiles on first use)
    except ImportError:
        raise MissingDependencyError("UMAP needs umap-learn: pip install 'tb-attention[umap]'") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "n_jobs overridden by setting random_state"
        model = umap_module.UMAP(n_components=2, init=np.asarray(init, np.float64), n_epochs=n_epochs, random_state=0)
        return model.fit_transform(np.asarray(points, np.float32))


# -- one head, one step ------------------------------------------------------------------------------------
def layout(head, method="pca", translate=True, scale=True, reference=None, init=None, progress=None):
    """The 2-D layout of one head: [Nq + Nk, 2] (queries first), aligned to `reference` (the previous step's
    layout of the same points, or None) so that step-to-step changes animate instead of reshuffling.

    method: "pca" | "faithful" | "tsne" | "umap". "faithful" always starts from (and is anchored to) the
    aligned PCA layout, so it is a deterministic function of the step's data and the alignment. t-SNE/UMAP start
    from `init` when given (the previous step's layout: warm start), else from the aligned PCA layout. Every
    nonlinear layout is finally Procrustes-aligned to the aligned PCA layout.
    Returns (layout, info) with the normalisation parameters.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    qn, kn, info = normalise(head.q, head.k, translate, scale)
    points = np.concatenate([qn, kn])
    base = pca(points)
    if reference is not None:
        base = procrustes(base, reference)
    if method == "pca":
        return base, info
    start = base if init is None else np.asarray(init, np.float64)
    if method == "faithful":
        y = faithful(head, base, anchor=base, progress=progress)
    elif method == "tsne":
        y = tsne(points, start, warm=init is not None)
    else:
        y = umap(points, start)
    if method != "faithful":
        # Bring the nonlinear layout to the PCA layout's scale and orientation so views and steps compare.
        y = y - y.mean(0)
        y *= np.sqrt(np.sum(base.var(0)) / max(np.sum(y.var(0)), 1e-30))
    return procrustes(y, base), info


def scores(head, y, translate=True, scale=True):
    """{"faithfulness": 2-D score, "original": score in the normalised D-dim space, "mixing": q/k mixing, and the
    queries they were computed on} (embedding_scores.py)."""
    qn, kn, _ = normalise(head.q, head.k, translate, scale)
    return embedding_scores.scores(head, y, qn, kn)


def compute(q, k, q_probe, k_probe, masks, method, translate, scale, reference, init):
    """layout() + scores() from plain arrays: what the plugin's worker process runs (picklable arguments)."""
    with one_blas_thread():
        head = Head(q, k, q_probe, k_probe, masks)
        xy, info = layout(head, method, translate, scale, reference=reference, init=init)
        return xy, dict(info, **scores(head, xy, translate, scale))
