"""What-changed distance, rank by change, attention rollout: by hand, and through the plugin routes."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.analysis import evolution
from tb_attention.format import codec
from tests.conftest import softmax_attention


def test_js_divergence_by_hand():
    eye = np.eye(3)
    assert evolution.js_divergence(eye, eye) == 0
    assert evolution.js_divergence(eye, np.roll(eye, 1, axis=1)) == pytest.approx(1.0)  # disjoint rows: 1 bit
    # [1, 0] vs [.5, .5]: m = [.75, .25]; 0.5*KL(p||m) + 0.5*KL(q||m)
    p, q = np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])
    expected = 0.5 * np.log2(1 / 0.75) + 0.5 * (0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25))
    assert evolution.js_divergence(p, q) == pytest.approx(expected)
    rows = np.stack([eye, np.roll(eye, 1, axis=1)])
    assert evolution.js_divergence(rows, np.stack([eye, eye]), query_mask=[True, True, False]).tolist() == [0, 1]


def test_rollout_by_hand():
    uniform = np.full((1, 2, 3, 3), 1 / 3)
    out = evolution.rollout(uniform, "mean", 0.5)
    np.testing.assert_allclose(out[0], 0.5 * np.eye(3) + 0.5 / 3, rtol=1e-6)
    # Two layers: R_1 = Â_1 @ Â_0.
    eye = np.eye(3)[None, None]
    shifted = np.roll(np.eye(3), 1, axis=1)[None, None]
    two = np.concatenate([eye, shifted])
    out = evolution.rollout(two, "max", 0.0)
    np.testing.assert_allclose(out[1], np.roll(np.eye(3), 1, axis=1), atol=1e-7)
    heads = np.stack([np.eye(3), np.full((3, 3), 1 / 3)])[None]
    # min fuses the two heads to diag(1/3), renormalised to I
    np.testing.assert_allclose(evolution.rollout(heads, "min", 0.0)[0], np.eye(3), atol=1e-6)
    with pytest.raises(ValueError, match="fusion"):
        evolution.rollout(uniform, "median")


def test_rank_changes():
    a = np.array([[0.1, 0.5], [0.2, np.nan]])
    b = np.array([[0.9, 0.4], [0.2, 0.3]])
    assert evolution.rank_changes(a, b) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_routes_on_both_loaders(tmp_path, rng, load):
    a0, a1 = softmax_attention(rng, 2, 3, 5), softmax_attention(rng, 2, 3, 5)
    tokens = list("abcde")
    with AttentionWriter(str(tmp_path / "r1")) as w:
        w.add_attention("p", a0, tokens=tokens, step=0)
        w.add_attention("p", a1, tokens=tokens, step=10)
        w.add_metrics("only_metrics", a0, step=3)
        w.add_attention("cross", softmax_attention(rng, 1, 1, 2, 3), tokens=list("ab"), key_tokens=list("xyz"), step=0)
    with AttentionWriter(str(tmp_path / "r2")) as w:
        w.add_attention("p", a1, tokens=tokens, step=0)
    loaded = load(tmp_path)
    runs = loaded.get("metric_runs").get_json()["runs"]
    assert [r["run"] for r in runs] == ["r1", "r2"]
    assert [t["tag"] for t in runs[0]["tags"]] == ["cross", "only_metrics", "p"]
    assert "induction" in runs[0]["tags"][2]["stats"]

    resp = loaded.get("head_diff", run="r1", tag="p", step=0, step_b=10)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    _, arrays = codec.unpack(resp.get_data())
    # The route compares the stored (8-bit) attention: close to the exact value.
    np.testing.assert_allclose(arrays["jsd"], evolution.js_divergence(a0, a1), atol=5e-3)
    _, across = codec.unpack(loaded.get("head_diff", run="r1", tag="p", step=10, run_b="r2", step_b=0).get_data())
    assert np.abs(across["jsd"]).max() < 1e-3  # same attention in both runs

    meta, arrays = codec.unpack(
        loaded.get("rollout", run="r1", tag="p", step=10, fusion="max", residual="0.3").get_data()
    )
    assert meta["fusion"] == "max" and "Abnar" in meta["approximation"]
    np.testing.assert_allclose(arrays["rollout"], evolution.rollout(a1, "max", 0.3), atol=1e-2)

    for params, status in [
        ({"run": "r1", "tag": "p", "step": 0, "fusion": "median"}, 400),
        ({"run": "r1", "tag": "p", "step": 0, "residual": "2"}, 400),
        ({"run": "r1", "tag": "cross", "step": 0}, 400),
        ({"run": "r1", "tag": "p", "step": 5}, 404),
    ]:
        assert loaded.get("rollout", **params).status_code == status, params
    assert loaded.get("head_diff", run="r1", tag="p", step=0, tag_b="cross", step_b=0).status_code == 400
