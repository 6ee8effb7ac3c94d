"""The joint query-key embedding: exact normalisations, PCA, alignment across steps, faithfulness score."""

import numpy as np
import pytest

from tb_attention.analysis import embedding as E


def _softmax(x):
    x = np.where(np.isfinite(x), x, -np.inf)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _head(rng, probes=4, length=12, d=16, causal=False, q_offset=3.0, k_offset=-2.0, k_scale=4.0):
    qs, ks, pr, masks = [], [], [], []
    mean_q, mean_k = rng.normal(size=d) * q_offset, rng.normal(size=d) * k_offset
    for p in range(probes):
        n = length + p
        qs.append(rng.normal(size=(n, d)) + mean_q)
        ks.append(rng.normal(size=(n, d)) * k_scale + mean_k)
        pr.append(np.full(n, p))
        masks.append(np.tril(np.ones((n, n), bool)) if causal else np.ones((n, n), bool))
    pr = np.concatenate(pr)
    return E.Head(np.concatenate(qs), np.concatenate(ks), pr, pr, masks)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("translate, scale", [(True, True), (True, False), (False, True)])
def test_normalisations_leave_every_softmax_row_unchanged(seed, translate, scale):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 65))
    head = _head(
        rng,
        probes=int(rng.integers(1, 4)),
        length=int(rng.integers(1, 20)),
        d=d,
        causal=bool(seed % 2),
        q_offset=float(rng.uniform(0, 10)),
        k_offset=float(rng.uniform(0, 10)),
        k_scale=float(rng.uniform(0.01, 100)),
    )
    qn, kn, info = E.normalise(head.q, head.k, translate, scale)
    for qi, ki, mask in head.groups:
        before = np.where(mask, head.q[qi].astype(np.float64) @ head.k[ki].astype(np.float64).T / np.sqrt(d), -np.inf)
        after = np.where(mask, qn[qi] @ kn[ki].T / np.sqrt(d), -np.inf)
        np.testing.assert_allclose(_softmax(after), _softmax(before), atol=1e-9, rtol=1e-7)
    if translate:
        np.testing.assert_allclose(qn.mean(0), kn.mean(0), atol=1e-9 * (1 + np.abs(qn).max()))
    if scale:
        spread = lambda x: np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, 1)))  # noqa: E731
        assert spread(qn) == pytest.approx(spread(kn), rel=1e-9)
        assert info["scale"] > 0


def test_scaling_keeps_every_logit():
    rng = np.random.default_rng(0)
    head = _head(rng)
    qn, kn, _ = E.normalise(head.q, head.k, translate=False, scale=True)
    np.testing.assert_allclose(qn @ kn.T, head.q.astype(np.float64) @ head.k.astype(np.float64).T, rtol=1e-9, atol=1e-9)


def test_procrustes_undoes_a_rotation_and_keeps_a_fixed_cloud():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 2))
    np.testing.assert_allclose(E.procrustes(y, y), y, atol=1e-12)
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    np.testing.assert_allclose(E.procrustes(y @ rot * [1, -1] + 5.0, y), y, atol=1e-10)


@pytest.mark.parametrize("method", ["pca", "faithful"])
def test_alignment_keeps_a_fixed_dataset_fixed_across_steps(method):
    """Step 2 logs the same vectors in a rotated D-space (every q·k identical): its layout must equal step 1's."""
    rng = np.random.default_rng(2)
    step1 = _head(rng, d=8)
    rot, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    step2 = E.Head(step1.q @ rot, step1.k @ rot, step1.q_probe, step1.k_probe, [g[2] for g in step1.groups])
    y1, _ = E.layout(step1, method)
    y2, _ = E.layout(step2, method, reference=E.layout(step1, "pca")[0])
    scale = np.abs(y1).max()
    np.testing.assert_allclose(y2, y1, atol=1e-4 * scale)
    again, _ = E.layout(step1, method, reference=E.layout(step1, "pca")[0])
    np.testing.assert_allclose(again, y1, atol=1e-6 * scale)


def test_faithfulness_is_one_when_distance_is_the_dot_product_and_minus_one_reversed():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(30, 5))
    k = rng.normal(size=(30, 5))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k /= np.linalg.norm(k, axis=1, keepdims=True)  # unit vectors: |q - k|^2 = 2 - 2 q·k
    probe = np.repeat([0, 1, 2], 10)
    head = E.Head(q, k, probe, probe, [np.tril(np.ones((10, 10), bool))] * 3)
    assert E.faithfulness(head, q, k) == pytest.approx(1.0)
    assert E.faithfulness(head, q, -k) == pytest.approx(-1.0)


def test_faithful_layout_beats_pca_and_keeps_queries_and_keys_mixed():
    rng = np.random.default_rng(4)
    head = _head(rng, probes=6, length=20, d=16)
    pca_y, _ = E.layout(head, "pca")
    y, _ = E.layout(head, "faithful")
    nq = len(head.q)
    s_pca, s = E.scores(head, pca_y), E.scores(head, y)
    assert s["faithfulness"] > s_pca["faithfulness"] + 0.2
    assert s["faithfulness"] > 0.6
    assert s["mixing"] > 0.4
    assert np.isfinite(y).all() and y.shape == (nq + len(head.k), 2)


def test_mixing_tells_islands_from_a_mixed_cloud():
    rng = np.random.default_rng(5)
    mixed = rng.normal(size=(400, 2))
    islands = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 50])
    assert E.mixing(mixed, 200) > 0.8
    assert E.mixing(islands, 200) < 0.05


def test_unknown_method_and_bad_shapes_raise_value_errors():
    rng = np.random.default_rng(6)
    head = _head(rng)
    with pytest.raises(ValueError, match="unknown method"):
        E.layout(head, "mds")
    with pytest.raises(ValueError, match="same D"):
        E.Head(np.zeros((3, 4)), np.zeros((3, 5)), [0, 0, 0], [0, 0, 0])


def test_tsne_is_warm_started_and_aligned_when_scikit_learn_is_installed():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(7)
    head = _head(rng, probes=3, length=20, d=8)
    y, _ = E.layout(head, "tsne")
    assert y.shape == (len(head.q) + len(head.k), 2) and np.isfinite(y).all()


def test_long_sequences_are_scored_in_blocks_and_refined_with_sampled_keys():
    """One 1,500-token causal probe: same score through the row-block path, faithful layout still improves."""
    rng = np.random.default_rng(8)
    n, d = 1500, 8
    q, k = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    probe = np.zeros(n, np.int64)
    head = E.Head(q, k, probe, probe, [np.tril(np.ones((n, n), bool))])
    y, _ = E.layout(head, "pca")
    short = E.Head(q[:600], k[:600], probe[:600], probe[:600], [np.tril(np.ones((600, 600), bool))])
    ys, _ = E.layout(short, "pca")
    np.testing.assert_allclose(
        E.faithfulness(short, ys[:600], ys[600:]), E.faithfulness(short, ys[:600], ys[600:], block=10_000), atol=1e-12
    )
    qi, _, _ = E._pairs(head)
    assert len(qi) <= n * 128
    yf, _ = E.layout(head, "faithful")
    assert E.faithfulness(head, yf[:n], yf[n:]) > E.faithfulness(head, y[:n], y[n:])
