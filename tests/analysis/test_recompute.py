"""analysis/recompute.py rebuilds exactly the weights the capture computes (capture/weights.py), for every mask kind,
softcap, sinks, relative bias and GQA; tiles and the overview equal a brute-force max-pool; blocks stay bounded."""

import numpy as np
import pytest
import torch

from tb_attention.analysis import recompute, summary
from tb_attention.capture.masks import to_additive
from tb_attention.capture.weights import attention_probs

torch.set_num_threads(1)
Q, K, D, H, G = 23, 29, 8, 4, 2  # offset K - Q = 6: a cache, bottom-right aligned

MASKS = [
    {"mask": "none"},
    {"mask": "causal", "offset": 6},
    {"mask": "sliding", "offset": 6, "window": 5},
    {"mask": "chunked", "offset": 6, "chunk": 7},
    {"mask": "band", "offset": 6, "window": 3},
    {"mask": "prefix", "offset": 6, "prefix": 9},
]


def _reference(q, k, entry, bias=None):
    """The capture's own computation, with the mask spelled out independently of recompute.allowed."""
    i = torch.arange(Q)[:, None] + entry.get("offset", 0)
    j = torch.arange(K)[None, :]
    kind = entry["mask"]
    causal = j <= i
    allowed = {
        "none": torch.ones(Q, K, dtype=torch.bool),
        "causal": causal,
        "sliding": causal & (j > i - entry.get("window", 0)),
        "chunked": causal & (j // entry.get("chunk", 1) == i // entry.get("chunk", 1)),
        "band": (i - j).abs() <= entry.get("window", 0),
        "prefix": causal | (j < entry.get("prefix", 0)),
    }[kind]
    sinks = entry.get("sinks")
    return attention_probs(
        torch.from_numpy(q)[None],
        torch.from_numpy(k)[None],
        [h // (H // G) for h in range(H)],
        entry["scaling"],
        to_additive(allowed[None, None], None),
        entry.get("softcap"),
        None if bias is None else torch.from_numpy(bias)[None],
        None if sinks is None else torch.tensor(sinks),
    )[0].numpy()


def _qk(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(H, Q, D)).astype(np.float32), rng.normal(size=(G, K, D)).astype(np.float32)


@pytest.mark.parametrize(
    "extra", [{}, {"softcap": 2.0}, {"sinks": [0.5, -1.0, 3.0, 0.0]}], ids=["plain", "cap", "sinks"]
)
@pytest.mark.parametrize("mask", MASKS, ids=[m["mask"] for m in MASKS])
def test_rebuilt_weights_equal_the_captures_for_every_mask(mask, extra):
    q, k = _qk()
    entry = {"scaling": 0.7, **mask, **extra}
    spec = recompute.Spec.from_layer(entry, H, G)
    expected = _reference(q, k, entry)
    for h in range(H):
        got = recompute.head_weights(spec, q[h], k[h // (H // G)], h)
        np.testing.assert_allclose(got, expected[h], atol=2e-6)


def test_relative_bias_is_found_and_rebuilds_t5_and_alibi():
    q, k = _qk(1)
    rng = np.random.default_rng(2)
    buckets = rng.normal(size=(H, Q + K - 1)).astype(np.float32)
    dist = np.arange(K)[None, :] - np.arange(Q)[:, None] + Q - 1
    t5 = buckets[:, dist]  # a function of j - i only
    slopes = np.array([0.5, 0.25, 0.125, 0.0625], np.float32)
    alibi = np.broadcast_to(slopes[:, None, None] * np.arange(K, dtype=np.float32), (H, Q, K)).copy()  # slope * j
    entry = {"scaling": 0.5, "mask": "causal", "offset": 6, "bias": "relative"}
    keep = recompute.allowed(recompute.Spec(0.5, "causal", 6), np.arange(Q), np.arange(K))
    for bias in (t5, alibi):
        table = recompute.relative_bias(bias, keep, 6)
        assert table is not None and table.shape == (H, Q + K - 1)
        spec = recompute.Spec.from_layer(entry, H, G, bias=table)
        expected = _reference(q, k, entry, bias)
        for h in range(H):
            np.testing.assert_allclose(recompute.head_weights(spec, q[h], k[h // 2], h), expected[h], atol=2e-6)
    noise = rng.normal(size=(H, Q, K)).astype(np.float32)
    assert recompute.relative_bias(noise, keep, 6) is None  # not a function of the distance: never "relative"


def test_unknown_parameters_are_refused_with_the_reason():
    with pytest.raises(recompute.NotRecomputable, match="scaling"):
        recompute.Spec.from_layer({"mask": "causal"}, H, G)
    with pytest.raises(recompute.NotRecomputable, match="tensor"):
        recompute.Spec.from_layer({"scaling": 1.0, "mask": "tensor"}, H, G)
    with pytest.raises(recompute.NotRecomputable, match="window"):
        recompute.Spec.from_layer({"scaling": 1.0, "mask": "sliding"}, H, G)
    with pytest.raises(recompute.NotRecomputable, match="additive"):
        recompute.Spec.from_layer({"scaling": 1.0, "mask": "none", "bias": "additive"}, H, G)


def test_summary_tiles_and_rows_from_lse_match_brute_force(monkeypatch):
    monkeypatch.setattr(recompute, "BLOCK_ELEMENTS", 3 * K)  # several row blocks even at this size
    rng = np.random.default_rng(3)
    n = 600  # > TILE: two tiles per axis at level 0, one at level 2
    q, k = rng.normal(size=(n, D)).astype(np.float32), rng.normal(size=(n, D)).astype(np.float32)
    spec = recompute.Spec.from_layer({"scaling": 0.9, "mask": "causal", "offset": 0}, 1, 1)
    full = recompute.head_weights(spec, q, k, 0)
    s = summary.summarise_head(spec, q, k, 0, topk=3, size=64)
    edges = recompute.pool_edges(n, 64)
    brute = np.array([[full[a:b, c:d].max() for c, d in zip(edges, edges[1:])] for a, b in zip(edges, edges[1:])])
    np.testing.assert_allclose(s.overview, brute, atol=3e-6)
    order = np.argsort(-full, axis=1, kind="stable")[:, :3]
    np.testing.assert_allclose(s.topk_weights, np.take_along_axis(full, order, axis=1), atol=3e-6)
    rows = np.array([0, 17, 599])
    np.testing.assert_allclose(recompute.head_weights(spec, q, k, 0, rows, s.lse), full[rows], atol=3e-6)
    assert recompute.levels(n, n) == 2
    for level in (0, 1, 2):
        span = recompute.TILE << level
        for r in range(-(-n // span)):
            for c in range(-(-n // span)):
                rr, cc = recompute.tile_range(r, level, n), recompute.tile_range(c, level, n)
                tile = recompute.max_pool(recompute.tile_weights(spec, q, k, 0, s.lse, rr, cc), 1 << level)
                ref = recompute.max_pool(full[rr[0] : rr[-1] + 1, cc[0] : cc[-1] + 1], 1 << level)
                np.testing.assert_allclose(tile, ref, atol=3e-6)


def test_codes_round_trip_within_half_a_code():
    w = np.linspace(0, 1, 10001, dtype=np.float32)
    back = recompute.decode_codes(recompute.cbrt_codes(w))
    assert np.all(np.abs(np.cbrt(back) - np.cbrt(w)) <= 0.5 / 255 + 1e-6)


@pytest.mark.parametrize("mask", MASKS, ids=[m["mask"] for m in MASKS])
def test_summary_skips_only_keys_no_row_sees(mask, monkeypatch):
    monkeypatch.setattr(recompute, "BLOCK_ROWS", 5)  # many short blocks: each skips the keys outside its rows' mask
    q, k = _qk(4)
    spec = recompute.Spec.from_layer({"scaling": 0.8, **mask}, H, G)
    for h in range(H):
        full = recompute.head_weights(spec, q[h], k[h // 2], h)
        s = summary.summarise_head(spec, q[h], k[h // 2], h, topk=K, size=256)
        np.testing.assert_allclose(s.overview, full, atol=3e-6)  # overview at full size is the weights
        np.testing.assert_allclose(np.sort(s.topk_weights, axis=1), np.sort(full, axis=1), atol=3e-6)
