"""Comparisons across steps and runs, and attention rollout (pure numpy; docs/metrics.md)."""

import numpy as np

FUSIONS = ("mean", "max", "min")


def js_divergence(a, b, query_mask=None):
    """Jensen-Shannon divergence (bits, 0..1) between attention rows of `a` and `b` ([..., Q, K]), averaged over
    the (valid) query rows -> [...]. The usual "how much did this head's pattern change" distance."""
    p = np.asarray(a, np.float64)
    q = np.asarray(b, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"cannot compare attention of shapes {p.shape} and {q.shape}")
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-30)
    q = q / np.maximum(q.sum(-1, keepdims=True), 1e-30)
    m = 0.5 * (p + q)

    def kl(x, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log2(np.where(x > 0, x, 1.0) / np.where(y > 0, y, 1.0)), 0.0).sum(-1)

    rows = np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)
    if query_mask is not None:
        rows = np.where(np.asarray(query_mask, bool), rows, np.nan)
        ok = ~np.isnan(rows)
        return np.where(ok, rows, 0).sum(-1) / np.maximum(ok.sum(-1), 1)
    return rows.mean(-1)


def rollout(attn, fusion="mean", residual=0.5):
    """Attention rollout (Abnar & Zuidema, 2020) of self-attention [L, H, T, T] -> [L, T, T].

    Heads are fused (mean/max/min), the residual connection is modelled as
    Â_l = residual·I + (1 − residual)·A_l (rows renormalised), and R_l = Â_l · R_{l−1} with R_0 = Â_0: row i of
    R_l approximates how much input token j contributes to position i after layer l. It ignores values, MLPs and
    layer norms, so it is an approximation, not an attribution.
    """
    a = np.asarray(attn, np.float64)
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"rollout needs self-attention [L, H, T, T], got shape {a.shape}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    fused = getattr(a, fusion)(axis=1)
    eye = np.eye(a.shape[-1])
    out = np.empty(fused.shape)
    current = eye
    for layer, f in enumerate(fused):
        hat = residual * eye + (1.0 - residual) * f
        hat /= np.maximum(hat.sum(-1, keepdims=True), 1e-30)
        current = hat @ current
        out[layer] = current
    return out.astype(np.float32)


def rank_changes(a, b, descending=True):
    """Head indices [(layer, head), ...] ordered by |b − a| of a per-head metric ([L, H]); NaN last."""
    delta = np.abs(np.asarray(b, np.float64) - np.asarray(a, np.float64))
    flat = np.where(np.isnan(delta), -np.inf, delta).ravel()
    order = np.argsort(-flat if descending else flat, kind="stable")
    return [tuple(int(x) for x in np.unravel_index(i, delta.shape)) for i in order]
