"""analysis/summary.py's fused pass gives what the plain computation gives (recompute.head_weights on whole rows,
then max-pool, top_k and metrics.py): weights, normalisers, entropy and key mass per row, overview and top-k, for
every mask kind with softcap, sinks and a relative bias, in blocks that skip keys; and head_metrics.add_block, fed
by that pass, equals metrics.compute on the whole head."""

import functools

import numpy as np
import pytest

from tb_attention.analysis import head_metrics, metrics, recompute, summary

Q, K, D, H, G = 23, 29, 8, 4, 2  # offset K - Q = 6, as in test_recompute.py
MASKS = [
    {"mask": "none"},
    {"mask": "causal", "offset": 6},
    {"mask": "sliding", "offset": 6, "window": 5},
    {"mask": "chunked", "offset": 6, "chunk": 7},
    {"mask": "band", "offset": 6, "window": 3},
    {"mask": "prefix", "offset": 6, "prefix": 9},
]
EXTRAS = {"plain": {}, "cap": {"softcap": 2.0}, "sinks": {"sinks": [0.5, -1.0, 3.0, 0.0]}, "bias": {"bias": 1}}


def _setup(mask, extra, q_len=Q, k_len=K, seed=0):
    rng = np.random.default_rng(seed)
    q = (rng.normal(size=(H, q_len, D)) * 1.5).astype(np.float32)
    k = (rng.normal(size=(G, k_len, D)) * 1.5).astype(np.float32)
    entry = {"scaling": 0.7, **mask, **{n: v for n, v in extra.items() if n != "bias"}}
    table = None
    if "bias" in extra:
        entry["bias"] = "relative"
        table = rng.normal(size=(H, q_len + k_len - 1)).astype(np.float32)
    return q, k, recompute.Spec.from_layer(entry, H, G, bias=table)


def _blocks(spec, q, k, h, topk=3, size=256):
    """summarise_head with its blocks copied out: (summary, full-width weights, entropy, mass, the blocks' spans)."""
    q_len, k_len = q.shape[1], k.shape[1]
    w, ent, mass, spans = np.zeros((q_len, k_len), np.float32), np.zeros(q_len), np.zeros(q_len), []

    def keep(b):
        w[b.start : b.stop, b.lo : b.hi] = b.weights
        ent[b.start : b.stop], mass[b.start : b.stop] = b.entropy, b.mass
        spans.append((b.start, b.stop, b.lo, b.hi))

    s = summary.summarise_head(spec, q[h], k[h // 2], h, topk, size=size, on_block=keep)
    return s, w, ent, mass, spans


@pytest.mark.parametrize("extra", EXTRAS.values(), ids=EXTRAS)
@pytest.mark.parametrize("mask", MASKS, ids=[m["mask"] for m in MASKS])
def test_the_fused_pass_equals_whole_rows(mask, extra, monkeypatch):
    monkeypatch.setattr(recompute, "BLOCK_ROWS", 5)  # several blocks, each skipping keys its rows never see
    q, k, spec = _setup(mask, extra)
    for h in range(H):
        full = recompute.head_weights(spec, q[h], k[h // 2], h)
        logits = recompute.logits(spec, q[h], k[h // 2], h, np.arange(Q), np.arange(K), Q)
        lse = recompute.softmax_rows(logits, None if spec.sinks is None else np.float32(spec.sinks[h]))
        s, w, ent, mass, spans = _blocks(spec, q, k, h, topk=3)
        assert len(spans) == 5 and all(hi - lo <= K for _, _, lo, hi in spans)
        np.testing.assert_allclose(w, full, atol=2e-6)
        np.testing.assert_allclose(s.lse, lse, rtol=1e-6, atol=1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(full > 0, full * np.log(np.where(full > 0, full, 1)), 0)
        np.testing.assert_allclose(ent, -plogp.sum(1), atol=1e-5)
        np.testing.assert_allclose(mass, full.sum(1), atol=1e-6)
        np.testing.assert_allclose(s.overview, full, atol=2e-6)  # an overview at full size is the weights
        keys, vals = recompute.top_k(full.copy(), 3)
        np.testing.assert_array_equal(s.topk_keys, keys)  # ties of zeros (rows seeing < 3 keys) to the lowest key
        np.testing.assert_allclose(s.topk_weights, vals, atol=2e-6)


def test_the_overview_pools_uneven_cells_and_blocks_across_them(monkeypatch):
    monkeypatch.setattr(recompute, "BLOCK_ROWS", 7)  # blocks end inside overview cells
    q, k, spec = _setup({"mask": "sliding", "offset": 0, "window": 9}, {}, q_len=40, k_len=40)
    full = recompute.head_weights(spec, q[1], k[0], 1)
    s = _blocks(spec, q, k, 1, size=16)[0]
    edges = recompute.pool_edges(40, 16)  # cells of 2 and 3 positions
    brute = [[full[a:b, c:d].max() for c, d in zip(edges, edges[1:])] for a, b in zip(edges, edges[1:])]
    np.testing.assert_allclose(s.overview, np.array(brute), atol=2e-6)


@pytest.mark.parametrize("listed", [True, False], ids=["targets-listed", "targets-compared"])
@pytest.mark.parametrize("extra", ["plain", "sinks"])
@pytest.mark.parametrize("mask", MASKS[:3], ids=[m["mask"] for m in MASKS[:3]])
def test_metrics_of_the_pass_equal_metrics_compute(mask, extra, listed, monkeypatch):
    monkeypatch.setattr(recompute, "BLOCK_ROWS", 4)
    if not listed:
        monkeypatch.setattr(head_metrics, "TARGETS_MAX", 0)
    n = 30
    q, k, spec = _setup({**mask, "offset": 0}, EXTRAS[extra], q_len=n, k_len=n, seed=3)
    tokens = np.random.default_rng(4).integers(0, 5, n)  # repeats (and runs): induction targets exist
    causal = mask["mask"] != "none"
    acc = head_metrics.HeadMetrics(H, n, n, causal=causal, tokens=tokens)
    full = np.stack([recompute.head_weights(spec, q[h], k[h // 2], h) for h in range(H)])
    for h in range(H):
        summary.summarise_head(spec, q[h], k[h // 2], h, 4, on_block=functools.partial(acc.add_block, h))
    # metrics.compute renormalises chunks whose rows miss 1 by 1e-3; heads one by one, like the writer's blocks
    expected = {name: [] for name in metrics.NAMES}
    for h in range(H):
        plain = head_metrics.HeadMetrics(1, n, n, causal=causal, tokens=tokens)
        for start, stop in recompute.row_blocks(n, n):
            plain.add(0, start, full[h, start:stop])
        for name, value in plain.values().items():
            expected[name].append(value[0])
    got = acc.values()
    for name in metrics.NAMES:
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=2e-6, err_msg=name)
    if extra == "plain":  # and the rows summing to 1, metrics.compute on the whole head agrees too
        whole = metrics.compute(full[None], tokens=tokens, causal=causal)
        for name in metrics.NAMES:
            np.testing.assert_allclose(got[name], whole[name][0], rtol=2e-5, atol=2e-6, err_msg=name)


def test_metrics_of_the_pass_for_cross_attention_and_patches():
    q, k, spec = _setup({"mask": "none"}, {}, q_len=6, k_len=10, seed=5)
    coords = metrics.patch_coords(10, (3, 3))
    for kwargs in ({}, {"query_coords": coords[:6], "key_coords": coords}):
        acc = head_metrics.HeadMetrics(H, 6, 10, **kwargs)
        for h in range(H):
            summary.summarise_head(spec, q[h], k[h // 2], h, 0, on_block=functools.partial(acc.add_block, h))
        full = np.stack([recompute.head_weights(spec, q[h], k[h // 2], h) for h in range(H)])
        expected = metrics.compute(full[None], causal=False, **kwargs)
        for name, value in acc.values().items():  # prev_token, diagonal, induction: NaN on both sides
            np.testing.assert_allclose(value, expected[name][0], rtol=2e-5, atol=2e-6, err_msg=name)
