"""`head_diff` and `rollout` never rebuild a whole step: head_diff samples rows of q/k-only or long probes (and
says so), rollout refuses (413) what is over its bound; both agree with brute force over the full weights."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.analysis import evolution, recompute
from tb_attention.format import codec
from tb_attention.serve import compare
from tests.conftest import softmax_attention, write_raw_probe
from tests.serve.qk_probes import CONTENT, qk_step

Q = 300


@pytest.fixture
def logdir(tmp_path):
    weights = {}
    for tag, seed, storage in [("a", 1, "qk"), ("b", 2, "qk"), ("wa", 1, "weights")]:
        blobs, w, _, _ = qk_step(np.random.default_rng(seed), layers=2, heads=2, q_len=Q, storage=storage)
        write_raw_probe(tmp_path / "run", tag, blobs, CONTENT, step=3)
        weights[tag] = w
    return tmp_path, weights


def test_head_diff_of_qk_layers_compares_a_documented_sample_of_rows(logdir, load):
    path, weights = logdir
    loaded = load(path)
    resp = loaded.get("head_diff", run="run", tag="a", step=3, tag_b="b", step_b=3)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    meta, arrays = codec.unpack(resp.get_data())
    assert meta == {"measure": "jensen_shannon_bits", "sampled": True, "rows": compare.DIFF_ROWS}
    rows = recompute.check_rows(Q, compare.DIFF_ROWS)
    want = evolution.js_divergence(weights["a"][:, :, rows], weights["b"][:, :, rows])
    np.testing.assert_allclose(arrays["jsd"], want, atol=1e-5)
    assert np.all(arrays["jsd"] > 0.05)  # different q/k: a real difference, not zeros
    # A q/k-only layer against the same q/k stored as weights: the same attention, up to the cbrt8 coding.
    _, same = codec.unpack(loaded.get("head_diff", run="run", tag="a", step=3, tag_b="wa", step_b=3).get_data())
    assert np.all(same["jsd"] < 1e-3)


def test_head_diff_of_short_weight_stored_probes_uses_every_row(tmp_path, rng, load):
    attn = softmax_attention(rng, 2, 3, 7)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", attn, tokens=list("abcdefg"), step=1)
        w.add_attention("p", attn[::-1].copy(), tokens=list("abcdefg"), step=2)
    loaded = load(tmp_path)
    meta, arrays = codec.unpack(loaded.get("head_diff", run="run", tag="p", step=1, step_b=2).get_data())
    assert meta == {"measure": "jensen_shannon_bits", "sampled": False, "rows": 7}
    np.testing.assert_allclose(arrays["jsd"], evolution.js_divergence(attn, attn[::-1]), atol=2e-3)


def test_rollout_of_qk_layers_matches_brute_force_and_refuses_past_its_bound(logdir, load, monkeypatch):
    path, weights = logdir
    loaded = load(path)
    resp = loaded.get("rollout", run="run", tag="a", step=3, fusion="max")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    _, arrays = codec.unpack(resp.get_data())
    np.testing.assert_allclose(arrays["rollout"], evolution.rollout(weights["a"], "max", 0.5), atol=1e-5)
    monkeypatch.setattr(compare, "ROLLOUT_MAX_TOKENS", Q - 1)
    resp = loaded.get("rollout", run="run", tag="a", step=3)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 413 and f"{Q} tokens" in text and "Traceback" not in text


def test_the_embedding_routes_read_a_qk_probe_with_the_mask_its_parameters_define(logdir, load):
    from tensorboard import context

    from tb_attention.analysis import embedding

    path, _ = logdir
    loaded = load(path)
    for tag in ("a", "wa"):  # the same q/k stored as "qk" and as weights
        resp = loaded.get("embedding", run="run", tag=tag, step=3, layer=1, head=1)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        meta, arrays = codec.unpack(resp.get_data())
        assert arrays["xy"].shape == (2 * Q, 2) and meta["kv_head"] == 0
        assert loaded.get("embedding_matrix", run="run", tag=tag, step=3).status_code == 200
    batches, ctx = loaded.plugin._embedding._batches, context.RequestContext()
    a, w = (batches.batch(ctx, "", "run", tag, 3) for tag in ("a", "wa"))
    causal = np.tril(np.ones((Q, Q), bool))
    np.testing.assert_array_equal(batches.masks(ctx, a, 1)[0], causal)
    # Stored weights: the keys whose weight is not coded 0 (masked ones, and any below 8e-9 of the row maximum).
    stored = codec.decode_attention(loaded.get("attention", run="run", tag="wa", step=3, layer=1).get_data())
    np.testing.assert_array_equal(batches.masks(ctx, w, 1)[0], (stored > 0).any(0))
    assert isinstance(batches.head(ctx, a, 1, 1), embedding.Head)
