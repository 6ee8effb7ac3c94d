"""Each metric against values worked out by hand on small matrices (docs/metrics.md)."""

import math

import numpy as np
import pytest

from tb_attention.analysis import metrics

N = 4
UNIFORM = np.full((N, N), 1 / N)
ONE_HOT_FIRST = np.zeros((N, N))
ONE_HOT_FIRST[:, 0] = 1  # every query attends to key 0 (a sink head)
DIAG = np.eye(N)
SHIFTED = np.eye(N, k=-1)
SHIFTED[0, 0] = 1  # previous-token head; row 0 has no previous token and attends to itself
CAUSAL_UNIFORM = np.tril(np.ones((N, N))) / np.arange(1, N + 1)[:, None]


def test_uniform():
    assert metrics.entropy(UNIFORM) == pytest.approx(math.log(4))
    assert metrics.entropy_norm(UNIFORM) == pytest.approx(1.0)
    # |i-j| averaged over j for i = 0..3: 6/4, 4/4, 4/4, 6/4 -> mean 1.25
    assert metrics.distance(UNIFORM) == pytest.approx(1.25)
    assert metrics.max_weight(UNIFORM) == pytest.approx(0.25)
    assert metrics.topk_mass(UNIFORM, k=3) == pytest.approx(0.75)
    assert metrics.sink_mass(UNIFORM) == pytest.approx(0.25)
    assert metrics.prev_token(UNIFORM) == pytest.approx(0.25)  # rows 1..3 only
    assert metrics.diagonal(UNIFORM) == pytest.approx(0.25)


def test_one_hot_sink():
    assert metrics.entropy(ONE_HOT_FIRST) == 0
    assert metrics.entropy_norm(ONE_HOT_FIRST) == pytest.approx(0.0)
    assert metrics.distance(ONE_HOT_FIRST) == pytest.approx((0 + 1 + 2 + 3) / 4)
    assert metrics.max_weight(ONE_HOT_FIRST) == 1
    assert metrics.topk_mass(ONE_HOT_FIRST) == 1
    assert metrics.sink_mass(ONE_HOT_FIRST) == 1
    assert metrics.prev_token(ONE_HOT_FIRST) == pytest.approx(1 / 3)  # only row 1 puts its weight on i-1 = 0
    assert metrics.diagonal(ONE_HOT_FIRST) == pytest.approx(1 / 4)


def test_diagonal_and_shifted_diagonal():
    assert metrics.diagonal(DIAG) == 1 and metrics.prev_token(DIAG) == 0
    assert metrics.distance(DIAG) == 0 and metrics.entropy(DIAG) == 0
    assert metrics.sink_mass(DIAG) == pytest.approx(0.25)
    assert metrics.prev_token(SHIFTED) == 1  # row 0 is excluded: it has no previous token
    assert metrics.diagonal(SHIFTED) == pytest.approx(0.25)
    assert metrics.distance(SHIFTED) == pytest.approx(3 / 4)


def test_causal_normalisation_uses_visible_keys():
    assert metrics.is_causal(CAUSAL_UNIFORM) and not metrics.is_causal(UNIFORM)
    np.testing.assert_allclose(metrics.entropy(CAUSAL_UNIFORM, per_row=True), np.log([1, 2, 3, 4]))
    # Row 0 sees one key (log 1 = 0): excluded; the others are uniform over what they see -> 1.
    rows = metrics.entropy_norm(CAUSAL_UNIFORM, per_row=True)
    assert np.isnan(rows[0]) and np.allclose(rows[1:], 1.0)
    assert metrics.entropy_norm(CAUSAL_UNIFORM) == pytest.approx(1.0)


def test_induction_pattern_on_a_repeated_sequence():
    tokens = ["<bos>", "a", "b", "c", "a", "b", "c"]
    n = len(tokens)
    targets = metrics.induction_targets(tokens)
    # Query 4 ("a", second copy) -> key 2 ("b", which followed the first "a"); 5 -> 3; 6 -> 4 (the 2nd "a").
    assert [tuple(np.flatnonzero(targets[i])) for i in range(n)] == [(), (), (), (), (2,), (3,), (4,)]
    perfect = np.zeros((n, n))
    perfect[np.arange(n), np.arange(n)] = 1.0
    for i, j in ((4, 2), (5, 3), (6, 4)):
        perfect[i] = 0
        perfect[i, j] = 1.0
    assert metrics.induction(perfect, tokens) == 1
    half = 0.5 * perfect + 0.5 * np.eye(n)
    assert metrics.induction(half, tokens) == pytest.approx(0.5)
    assert metrics.induction(DIAG, ["x", "y", "z", "w"]) != metrics.induction(DIAG, ["x", "y", "z", "w"])  # NaN


def test_padding_is_excluded():
    # A 3-token sequence padded to 4: the pad key gets weight that must be dropped, the pad query row ignored.
    w = np.array([[0.5, 0.0, 0.0, 0.5], [0.25, 0.25, 0.0, 0.5], [0.2, 0.2, 0.2, 0.4], [1.0, 0.0, 0.0, 0.0]])
    mask = np.array([True, True, True, False])
    clean = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    for name in ("entropy", "distance", "max_weight", "topk_mass", "sink_mass", "prev_token", "diagonal"):
        fn = getattr(metrics, name)
        assert fn(w, mask, mask) == pytest.approx(fn(clean)), name
    assert metrics.entropy_norm(w, mask, mask, causal=True) == pytest.approx(metrics.entropy_norm(clean))
    # Left padding: the sink is the first real token.
    left = np.zeros((3, 3))
    left[1:, 1] = 1
    assert metrics.sink_mass(left, [False, True, True], [False, True, True]) == 1


def test_cross_attention_leaves_position_metrics_undefined():
    cross = np.full((2, 5), 0.2)
    assert np.isnan(metrics.prev_token(cross)) and np.isnan(metrics.diagonal(cross))
    assert metrics.sink_mass(cross) == pytest.approx(0.2)


def test_patch_grid_distance():
    # CLS + a 2x2 grid; each patch attends half to CLS, half to the diagonally opposite patch (distance sqrt 2).
    coords = metrics.patch_coords(5, (2, 2))
    assert np.isnan(coords[0]).all() and coords[1:].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    w = np.zeros((5, 5))
    w[0] = 0.2
    for p, opposite in ((1, 4), (2, 3), (3, 2), (4, 1)):
        w[p, 0] = w[p, opposite] = 0.5
    # CLS is no position: its row is excluded and its key dropped (rows renormalised over patches).
    assert metrics.distance(w, query_coords=coords, key_coords=coords) == pytest.approx(math.sqrt(2))


def test_compute_batches_layers_heads_and_masks():
    rng = np.random.default_rng(0)
    L, B, H, Q = 2, 3, 4, 6
    logits = rng.normal(size=(L, B, H, Q, Q))
    logits = np.where(np.tril(np.ones((Q, Q), bool)), logits, -np.inf)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    mask = np.ones((B, Q), bool)
    mask[1, 4:] = False
    tokens = rng.integers(0, 3, size=(B, Q))
    out = metrics.compute(attn, query_mask=mask, key_mask=mask, tokens=tokens)
    assert set(out) == set(metrics.NAMES)
    assert all(v.shape == (L, H) and v.dtype == np.float32 for v in out.values())
    # Same as averaging the per-row values of every valid row by hand.
    rows = np.concatenate(
        [metrics.entropy(attn[1, b, 2, : mask[b].sum(), : mask[b].sum()], per_row=True) for b in range(B)]
    )
    assert out["entropy"][1, 2] == pytest.approx(rows.mean(), rel=1e-6)
    # Every metric of compute() equals its documented function, row by row over the valid rows.
    for name in metrics.NAMES:
        fn = getattr(metrics, name)
        for layer, head in ((0, 0), (1, 3)):
            per_row = []
            for b in range(B):
                n = mask[b].sum()
                a = attn[layer, b, head, :n, :n]
                r = fn(a, tokens[b, :n], per_row=True) if name == "induction" else fn(a, per_row=True)
                per_row.append(r[~np.isnan(r)])
            rows = np.concatenate(per_row)
            expected = rows.mean() if rows.size else np.nan
            np.testing.assert_allclose(out[name][layer, head], expected, rtol=1e-5, err_msg=name)
    single = metrics.compute(attn[:, 0], tokens=tokens[0])
    assert single["induction"].shape == (L, H)
    assert np.isnan(metrics.compute(attn[:, 0])["induction"]).all()


def test_repeated_random_probe():
    ids, tokens = metrics.repeated_random_tokens(50, 10, seed=3)
    assert ids[:10] == ids[10:] and len(set(ids[:10])) == 10 and tokens == [str(i) for i in ids]

    class Tok:
        all_special_ids = [0, 1]
        bos_token_id = None
        cls_token_id = 1

        def __len__(self):
            return 30

        def convert_ids_to_tokens(self, ids):
            return [f"t{i}" for i in ids]

    ids, tokens = metrics.repeated_random_tokens(Tok(), 8, seed=1)
    assert ids[0] == 1 and ids[1:9] == ids[9:] and not {0, 1} & set(ids[1:]) and tokens[0] == "t1"


def test_compute_uses_the_patch_grid_for_distance():
    rng = np.random.default_rng(1)
    attn = rng.random((1, 2, 5, 5))
    attn /= attn.sum(-1, keepdims=True)
    coords = metrics.patch_coords(5, (2, 2))
    out = metrics.compute(attn, query_coords=coords, key_coords=coords)
    for head in range(2):
        expected = metrics.distance(attn[0, head], query_coords=coords, key_coords=coords)
        assert out["distance"][0, head] == pytest.approx(expected, rel=1e-5)
