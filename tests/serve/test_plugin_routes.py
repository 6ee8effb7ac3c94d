"""What the plugin serves decodes to what was logged, on both data loaders."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import softmax_attention

L, H, T, D = 3, 4, 9, 8


@pytest.fixture
def logged(tmp_path, rng):
    """Two runs; run `a` has a probe with q/k (5 steps, GQA keys) and a cross-attention probe without q/k."""
    data = {}
    for run in ("a", "b"):
        with AttentionWriter(str(tmp_path / run)) as w:
            for step in (0, 10, 20, 30, 40):
                attn = softmax_attention(rng, L, H, T)
                q = rng.normal(size=(L, H, T, D)).astype(np.float32)
                k = rng.normal(size=(L, H // 2, T, D)).astype(np.float32)
                tokens = [f"tok{i}" for i in range(T - 1)] + ["<img src=x onerror=alert(1)>"]
                w.add_attention("probe/copy", attn, tokens=tokens, step=step, queries=q, keys=k)
                data[run, "probe/copy", step] = (attn, q, k, tokens)
            if run == "a":
                cross = softmax_attention(rng, 2, H, 4, 6)
                w.add_attention("probe/cross", cross, tokens=list("abcd"), key_tokens=list("uvwxyz"), step=7)
                data[run, "probe/cross", 7] = (cross, None, None, list("abcd"))
    return tmp_path, data


def test_runs_and_probes_are_listed(logged, load):
    loaded = load(logged[0])
    body = loaded.get("runs").get_json()
    assert body == {
        "runs": [
            {"run": "a", "probes": ["probe/copy", "probe/cross"], "problems": []},
            {"run": "b", "probes": ["probe/copy"], "problems": []},
        ]
    }


def test_all_steps_are_served_in_order(logged, load):
    loaded = load(logged[0])
    body = loaded.get("steps", run="a", tag="probe/copy").get_json()
    assert body["steps"] == [0, 10, 20, 30, 40]
    assert len(body["wall_times"]) == 5


def test_attention_round_trip_within_documented_bound(logged, load):
    logdir, data = logged
    loaded = load(logdir)
    for (run, tag, step), (attn, *_rest) in data.items():
        for layer in range(attn.shape[0]):
            resp = loaded.get("attention", run=run, tag=tag, step=step, layer=layer)
            assert resp.status_code == 200, resp.get_data(as_text=True)
            assert resp.mimetype == "application/octet-stream"
            decoded = codec.decode_attention(resp.get_data())
            assert decoded.shape == attn[layer].shape
            assert np.all(np.abs(decoded - attn[layer]) <= codec.cbrt8_error_bound(attn[layer]))


def test_queries_and_keys_round_trip_unrepeated(logged, load):
    logdir, data = logged
    loaded = load(logdir)
    _, q, k, _ = data["b", "probe/copy", 30]
    resp = loaded.get("qk", run="b", tag="probe/copy", step=30, layer=2)
    meta, arrays = codec.unpack(resp.get_data())
    assert arrays["keys"].shape == (H // 2, T, D)  # GQA keys stay unrepeated
    np.testing.assert_allclose(arrays["queries"], q[2], rtol=2**-10, atol=1e-7)
    np.testing.assert_allclose(arrays["keys"], k[2], rtol=2**-10, atol=1e-7)


def test_tokens_route_returns_untouched_strings_and_shapes(logged, load):
    logdir, data = logged
    loaded = load(logdir)
    manifest = loaded.get("tokens", run="a", tag="probe/copy", step=20).get_json()
    assert manifest["tokens"] == data["a", "probe/copy", 20][3]
    assert manifest["tokens"][-1] == "<img src=x onerror=alert(1)>"
    assert (manifest["num_layers"], manifest["num_heads"], manifest["num_kv_heads"], manifest["d_head"]) == (
        L,
        H,
        H // 2,
        D,
    )
    cross = loaded.get("tokens", run="a", tag="probe/cross", step=7).get_json()
    assert cross["key_tokens"] == list("uvwxyz") and cross["has_qk"] is False


def test_head_stats_are_binary_per_step_entropy(logged, load):
    logdir, data = logged
    loaded = load(logdir)
    _, arrays = codec.unpack(loaded.get("head_stats", run="a", tag="probe/copy").get_data())
    assert arrays["steps"].tolist() == [0, 10, 20, 30, 40]
    attn = data["a", "probe/copy", 10][0]
    expected = -(attn * np.log(attn)).sum(-1).mean(-1)
    np.testing.assert_allclose(arrays["entropy"][1], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "route, params, status, message",
    [
        ("steps", {"run": "a"}, 400, "missing parameter 'tag'"),
        ("steps", {"run": "nope", "tag": "probe/copy"}, 404, "no attention probe"),
        ("steps", {"run": "a", "tag": "probe/nope"}, 404, "no attention probe"),
        ("tokens", {"run": "a", "tag": "probe/copy", "step": "abc"}, 400, "non-negative integer"),
        ("tokens", {"run": "a", "tag": "probe/copy", "step": "-1"}, 400, "non-negative integer"),
        ("tokens", {"run": "a", "tag": "probe/copy", "step": "99999999999999999999999"}, 400, "non-negative integer"),
        ("tokens", {"run": "a", "tag": "probe/copy", "step": "15"}, 404, "step 15"),
        ("attention", {"run": "a", "tag": "probe/copy", "step": "10", "layer": "3"}, 404, "layer 3 out of range"),
        ("attention", {"run": "a", "tag": "probe/copy", "step": "10"}, 400, "missing parameter 'layer'"),
        ("qk", {"run": "a", "tag": "probe/cross", "step": "7", "layer": "0"}, 404, "not logged"),
        ("head_stats", {"run": "a", "tag": "probe/none"}, 404, "no head statistics"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(logged, load, route, params, status, message):
    loaded = load(logged[0])
    resp = loaded.get(route, **params)
    assert resp.status_code == status
    assert message in resp.get_data(as_text=True)
    assert "Traceback" not in resp.get_data(as_text=True)


def test_bundle_is_served_as_javascript(logged, load):
    resp = load(logged[0]).get("index.js")
    assert resp.status_code == 200 and resp.mimetype == "text/javascript"
    assert b"render" in resp.get_data()
