"""add_attention(store=...): q/k-only layers are stored as q/k plus a recompute container built from the fp16 q/k as
stored, rebuild within the bound, fall back to weights (with a warning) when a check row misses it, and are refused
in the call when nothing could be stored instead."""

import json
import warnings

import numpy as np
import pytest
import torch

from tb_attention import AttentionWriter
from tb_attention.analysis import recompute, summary
from tb_attention.capture.masks import to_additive
from tb_attention.capture.weights import attention_probs
from tb_attention.write import qk_layers
from tests.qk_util import rebuild, slot, within_bound, written

torch.set_num_threads(1)
L, H, G, Q, D = 2, 4, 2, 20, 8
TOKENS = [f"t{i}" for i in range(Q)]


def _qk(seed=0, q_len=Q, k_len=Q):
    rng = np.random.default_rng(seed)
    q = (rng.normal(size=(L, H, q_len, D)) * 1.5).astype(np.float32)
    return q, (rng.normal(size=(L, G, k_len, D)) * 1.5).astype(np.float32)


def _model_weights(q, k, entry, table=None):
    """What a model computes from its unrounded q/k (capture/weights.py), per layer [H, Q, K]."""
    q_len, k_len = q.shape[2], k.shape[2]
    i = torch.arange(q_len)[:, None] + entry.get("offset", 0)
    j = torch.arange(k_len)[None, :]
    allowed = {"none": torch.ones(q_len, k_len, dtype=torch.bool), "causal": j <= i}.get(entry["mask"])
    if entry["mask"] == "sliding":
        allowed = (j <= i) & (j > i - entry["window"])
    bias = None
    if table is not None:
        bias = torch.from_numpy(table)[:, (j - torch.arange(q_len)[:, None] + q_len - 1)][None]
    sinks = entry.get("sinks")
    return np.stack(
        [
            attention_probs(
                torch.from_numpy(q[layer])[None],
                torch.from_numpy(k[layer])[None],
                [h // (H // G) for h in range(H)],
                entry["scaling"],
                to_additive(allowed[None, None], None),
                entry.get("softcap"),
                bias,
                None if sinks is None else torch.tensor(sinks),
            )[0].numpy()
            for layer in range(L)
        ]
    )


BASE = {"scaling": D**-0.5, "mask": "causal", "offset": 0, "bias": "none"}
KINDS = {
    "causal": BASE,
    "sliding": {**BASE, "mask": "sliding", "window": 5},
    "softcap": {**BASE, "softcap": 2.0},
    "sinks": {**BASE, "sinks": [0.5, -1.0, 2.0, 0.0]},
    "relative": {**BASE, "mask": "none"},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_q_k_without_weights_is_rebuilt_within_the_bound(tmp_path, kind):
    entry = KINDS[kind]
    q, k = _qk()
    table = np.random.default_rng(3).normal(size=(H, 2 * Q - 1)).astype(np.float32) if kind == "relative" else None
    layers = [{"index": 10 + i, **entry, "bias": table if table is not None else "none"} for i in range(L)]
    real = _model_weights(q, k, entry, table)
    with AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", tokens=TOKENS, step=0, queries=q, keys=k, layers=layers)
    (m, blobs), metrics = written(tmp_path)[0]["p"], written(tmp_path)[1]["p"]
    assert m.storage == ["qk", "qk"] and [e["index"] for e in m.layers] == [10, 11]
    assert m.layers[0]["bias"] == ("relative" if table is not None else "none")
    for layer in range(L):
        meta, arrays = slot(m, blobs, layer)
        assert (meta["k"], meta["checked_rows"], meta["max_error"]) == (4, 0, 0.0)  # no weights: nothing checked
        assert arrays["topk_keys"].dtype == np.uint16 and ("bias" in arrays) == (table is not None)
        assert within_bound(rebuild(m, blobs, layer), real[layer]), layer
    # Metrics come from the rebuilt weights (one head at a time), equal to those of the real weights.
    with AttentionWriter(str(tmp_path / "w")) as w:
        w.add_attention("p", real, tokens=TOKENS, step=0, partial_rows=kind == "sinks")
    expected = written(tmp_path / "w")[1]["p"]
    for name in expected:
        np.testing.assert_allclose(metrics[name], expected[name], rtol=0.02, atol=2e-3, err_msg=name)


def test_cross_attention_with_a_cache_offset_and_fewer_top_k_past_the_limit(tmp_path, monkeypatch):
    q, k = _qk(q_len=6, k_len=11)
    entry = {**BASE, "offset": 5}
    monkeypatch.setattr(qk_layers, "TOPK_MAX_QUERIES", 5)  # 6 queries: past the limit, as 8,193 would be
    with AttentionWriter(str(tmp_path)) as w:
        w.add_attention(
            "x",
            tokens=TOKENS[:6],
            key_tokens=TOKENS[:11],
            step=0,
            queries=q,
            keys=k,
            layers=[entry | {"index": 0}, entry | {"index": 1}],
        )
    m, blobs = written(tmp_path)[0]["x"]
    meta, arrays = slot(m, blobs, 1)
    assert meta["k"] == qk_layers.TOPK_LONG == 2 and arrays["topk_keys"].shape == (H, 6, 2)
    full = _model_weights(q, k, entry)[1]
    top = np.sort(full, axis=-1)[..., ::-1][..., :2]  # each query's two strongest keys, within their codes
    np.testing.assert_allclose((arrays["topk_codes"] / 255.0) ** 3, top, atol=0.02)
    assert arrays["overview"].shape == (H, 6, 11)
    assert within_bound(rebuild(m, blobs, 1), _model_weights(q, k, entry)[1])


def test_weights_and_store_qk_check_rows_and_a_wrong_layer_falls_back_to_weights(tmp_path, load):
    q, k = _qk()
    real = _model_weights(q, k, BASE)
    layers = [{"index": 3, **BASE}, {"index": 7, **BASE, "scaling": 2 * D**-0.5}]  # layer 7's scaling is wrong
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with AttentionWriter(str(tmp_path / "r")) as w:
            w.add_attention("p", real, tokens=TOKENS, step=0, queries=q, keys=k, layers=layers, store="qk")
    messages = [str(r.message) for r in record if "rebuilt from the stored q/k" in str(r.message)]
    assert len(messages) == 1 and "'p' layer 7:" in messages[0] and "stored as weights" in messages[0]
    m, blobs = written(tmp_path / "r")[0]["p"]
    assert m.storage == ["qk", "both"]
    meta, _ = slot(m, blobs, 0)
    assert meta["checked_rows"] == 16 and 0 < meta["max_error"] < recompute.RECOMPUTE_BOUND
    assert within_bound(rebuild(m, blobs, 0), real[0])
    assert np.abs(rebuild(m, blobs, 1) - real[1]).max() < 0.01  # the real weights, cbrt8-coded
    served = json.loads(load(tmp_path).get("tokens", run="r", tag="p", step=0).get_data())
    assert served["storage"] == ["qk", "both"]


def test_a_check_that_fails_without_weights_is_an_error_naming_the_layer(tmp_path):
    q, k = _qk()
    real = _model_weights(q, k, BASE)
    rows = recompute.check_rows(Q, 4)
    layers = [{"index": 0, **BASE}, {"index": 5, **BASE, "mask": "none"}]  # layer 5 says no mask: wrong
    with AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", tokens=TOKENS, step=0, queries=q, keys=k, layers=layers, check=(rows, real[:, :, rows]))
        with pytest.raises(RuntimeError, match=r"'p' layer 5: weights rebuilt .* no weights to store instead"):
            w.flush()
        layers[1]["mask"] = "causal"
        w.add_attention("p", tokens=TOKENS, step=0, queries=q, keys=k, layers=layers, check=(rows, real[:, :, rows]))
    m, blobs = written(tmp_path)[0]["p"]
    assert slot(m, blobs, 1)[0]["checked_rows"] == 4


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layers": None}, ValueError, "'p' layer 0: cannot store only q/k .*no layers="),
        ({"layers": [{"index": 4, "mask": "causal"}, 5]}, ValueError, "'p' layer 4: .*unknown scaling"),
        ({"layers": [{**BASE, "index": 0, "bias": "additive"}, 1]}, ValueError, "layer 0: .*'additive'"),
        ({"layers": [{**BASE, "index": 0, "mask": "sliding"}, 1]}, ValueError, "sliding mask needs its window"),
        ({"layers": [{**BASE, "index": 0, "bias": np.zeros((H, 5))}, 1]}, ValueError, r"\[4, 39\], got shape"),
        ({"store": "weights"}, ValueError, "store='weights' for layer 0 needs its attentions"),
        ({"store": ["qk"]}, ValueError, "a list of 2 of them"),
        ({"queries": None}, TypeError, "needs attentions, or queries and keys"),
        ({"check": (np.array([0, 0]), np.zeros((L, H, 2, Q)))}, ValueError, "distinct query indices"),
        ({"check": (np.array([0, Q]), np.zeros((L, H, 2, Q)))}, ValueError, "outside 0..19"),
        ({"check": (np.array([0, 1]), np.zeros((L, H, 3, Q)))}, ValueError, r"2 layers of \[4, 2, 20\]"),
    ],
)
def test_what_cannot_be_stored_is_refused_in_the_call(tmp_path, kwargs, error, message):
    q, k = _qk()
    args = {"queries": q, "keys": k, "layers": [{"index": i, **BASE} for i in range(L)], **kwargs}
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(error, match=message):
            w.add_attention("p", tokens=TOKENS, step=0, **args)
        w.add_attention("p", tokens=TOKENS, step=0, queries=q, keys=k, layers=[{"index": i, **BASE} for i in range(L)])
    assert written(tmp_path)[0]["p"][0].storage == ["qk", "qk"]


def test_with_weights_a_layer_that_cannot_be_rebuilt_keeps_its_weights_with_a_warning(tmp_path):
    q, k = _qk()
    real = _model_weights(q, k, BASE)
    layers = [{"index": 0, **BASE, "bias": "additive"}, {"index": 1, **BASE}]
    with pytest.warns(UserWarning, match=r"'p' layer 0: cannot store only q/k .*'additive'.*; stored as weights"):
        with AttentionWriter(str(tmp_path)) as w:
            w.add_attention("p", real, tokens=TOKENS, step=0, queries=q, keys=k, layers=layers, store="qk")
    assert written(tmp_path)[0]["p"][0].storage == ["both", "qk"]


def test_max_step_bytes_counts_the_float16_q_k_copy(tmp_path):
    q = np.broadcast_to(np.float32(0.1), (32, 32, 4096, 128))  # no memory: 1 GiB once copied as float16
    k = np.broadcast_to(np.float32(0.1), (32, 8, 4096, 128))
    with AttentionWriter(str(tmp_path), max_step_bytes=1 << 30) as w:
        with pytest.raises(ValueError, match=r"q/k only and 1.2 GiB of float16 q/k, over max_step_bytes"):
            w.add_attention("p", tokens=[str(i) for i in range(4096)], step=0, queries=q, keys=k, layers=[0] * 32)


def test_the_summary_pass_with_metrics_equals_summarise_head():
    from tb_attention.analysis.head_metrics import HeadMetrics

    q, k = _qk(q_len=300, k_len=300)  # more than one overview cell per row: pooled over row groups
    spec = recompute.Spec.from_layer({**BASE, "mask": "sliding", "window": 40}, H, G)
    got = qk_layers.summarise_layer(spec, q[0].astype(np.float16), k[0].astype(np.float16), 4, HeadMetrics(H, 300, 300))
    plain = qk_layers.summarise_layer(spec, q[0].astype(np.float16), k[0].astype(np.float16), 4)
    for a, b in zip(got, plain):
        np.testing.assert_array_equal(a, b)
    one = summary.summarise_head(spec, q[0, 3].astype(np.float16), k[0, 1].astype(np.float16), 3, 4)
    np.testing.assert_array_equal(got[1][3], one.overview)
    np.testing.assert_array_equal(got[2][3], one.topk_keys)
