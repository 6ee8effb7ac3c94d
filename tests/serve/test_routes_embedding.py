"""Joint query-key embedding routes on both loaders: probe batches, PCA, alignment, jobs, cache, bad input."""

import time

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec

L, H, HKV, D = 2, 4, 2, 8
LENGTHS = [6, 7, 5, 8, 6, 7, 5, 6, 7, 8, 6]  # 11 inputs: sents/10 must sort after sents/9


def _attention(q, k):
    group = q.shape[1] // k.shape[1]
    logits = np.einsum("lhqd,lhkd->lhqk", q, np.repeat(k, group, axis=1)) / np.sqrt(D)
    n = q.shape[2]
    logits = np.where(np.tril(np.ones((n, n), bool)), logits, -np.inf)  # causal
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def load(load):
    """The conftest `load`, stopping each plugin's embedding worker process afterwards."""
    made = []

    def _load(logdir):
        made.append(load(logdir))
        return made[-1]

    yield _load
    for loaded in made:
        loaded.plugin._embedding.close()


@pytest.fixture
def logged(tmp_path):
    """Run `a`: batch `sents` (11 causal inputs, GQA) at steps 0, 10 (= step 0 rotated in D-space: every q·k
    unchanged), 20 (new vectors); probe `plain` without q/k."""
    rng = np.random.default_rng(0)
    base = [(rng.normal(size=(L, H, n, D)) + 1.0, rng.normal(size=(L, HKV, n, D)) * 3 - 2.0) for n in LENGTHS]
    rot, _ = np.linalg.qr(rng.normal(size=(D, D)))
    fresh = [(rng.normal(size=(L, H, n, D)), rng.normal(size=(L, HKV, n, D))) for n in LENGTHS]
    with AttentionWriter(str(tmp_path / "a")) as w:
        for step, vectors in ((0, base), (10, [(q @ rot, k @ rot) for q, k in base]), (20, fresh)):
            qs = [q.astype(np.float32) for q, _ in vectors]
            ks = [k.astype(np.float32) for _, k in vectors]
            tags = w.add_attention_batch(
                "sents",
                [_attention(q, k) for q, k in zip(qs, ks)],
                tokens=[[f"w{i}" for i in range(n)] for n in LENGTHS],
                step=step,
                queries=qs,
                keys=ks,
            )
        plain = _attention(qs[0], ks[0])
        w.add_attention("plain", plain, tokens=[f"w{i}" for i in range(LENGTHS[0])], step=0)
    assert tags[-1] == "sents/10"
    return tmp_path


def _layout(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    meta, arrays = codec.unpack(resp.get_data())
    x0, y0, x1, y1 = meta["bbox"]
    xy = arrays["xy"].astype(np.float64) * [x1 - x0, y1 - y0] + [x0, y0]
    return meta, arrays, xy


def _until_done(loaded, route, **params):
    for _ in range(200):
        resp = loaded.get(route, **params)
        if resp.status_code != 202:
            return resp
        body = resp.get_json()
        assert body["state"] in ("queued", "running") and 0 <= body["progress"] <= 1
        loaded.plugin._embedding.wait(30)
    raise AssertionError("job never finished")


def test_batches_and_info_list_members_in_numeric_order(logged, load):
    loaded = load(logged)
    body = loaded.get("embedding_batches").get_json()
    run = body["runs"][0]
    assert run["run"] == "a" and {"tag": "sents", "probes": 11} in run["batches"]
    assert body["methods"]["pca"] and body["methods"]["faithful"]
    info = loaded.get("embedding_info", run="a", tag="sents").get_json()
    assert info["probes"] == [f"sents/{i}" for i in range(11)]
    assert info["steps"] == [0, 10, 20]
    assert [len(t) for t in info["tokens"]] == LENGTHS
    assert (info["num_layers"], info["num_heads"], info["num_kv_heads"], info["d_head"]) == (L, H, HKV, D)


def test_pca_layout_is_small_scored_and_fixed_for_a_fixed_dataset(logged, load):
    loaded = load(logged)
    n = sum(LENGTHS)
    meta0, arrays, xy0 = _layout(loaded.get("embedding", run="a", tag="sents", step=0, layer=1, head=3))
    assert arrays["xy"].dtype == np.float16 and arrays["xy"].shape == (2 * n, 2)
    assert arrays["norm"].dtype == np.float16 and arrays["norm"].shape == (2 * n,)
    assert meta0["num_queries"] == n and meta0["kv_head"] == 1 and meta0["method"] == "pca"
    assert -1 <= meta0["faithfulness"] <= 1 and 0 <= meta0["mixing"] and meta0["original"] > meta0["faithfulness"] - 1
    assert len(loaded.get("embedding", run="a", tag="sents", step=0, layer=1, head=3).get_data()) < 31_000
    # Step 10 holds the same vectors rotated in D-space: aligned, its layout is step 0's.
    meta10, _, xy10 = _layout(loaded.get("embedding", run="a", tag="sents", step=10, layer=1, head=3))
    assert meta10["aligned"] is True
    np.testing.assert_allclose(xy10, xy0, atol=1e-3 * np.abs(xy0).max())
    assert meta10["faithfulness"] == pytest.approx(meta0["faithfulness"], abs=0.02)  # fp16 storage of rotated q/k
    # Toggles change the layout but not the scale of the answer.
    _, _, raw = _layout(loaded.get("embedding", run="a", tag="sents", step=0, layer=1, head=3, translate=0, scale=0))
    assert not np.allclose(raw, xy0)


def test_faithful_layout_runs_as_a_job_is_cached_on_disk_and_scores_higher(logged, load, tmp_path_factory):
    loaded = load(logged)
    cache = tmp_path_factory.mktemp("cache")
    loaded.plugin._embedding._layouts.cache_dir = str(cache)
    params = dict(run="a", tag="sents", step=20, layer=0, head=1)
    first = loaded.get("embedding", method="faithful", **params)
    assert first.status_code in (200, 202)
    meta, _, xy = _layout(_until_done(loaded, "embedding", method="faithful", **params))
    pca_meta, _, _ = _layout(loaded.get("embedding", **params))
    assert meta["method"] == "faithful" and meta["faithfulness"] > pca_meta["faithfulness"]
    assert list(cache.rglob("*.npz"))
    # A fresh server on the same cache answers at once.
    other = load(logged)
    other.plugin._embedding._layouts.cache_dir = str(cache)
    again = other.get("embedding", method="faithful", **params)
    _, _, xy_again = _layout(again)
    np.testing.assert_allclose(xy_again, xy, atol=1e-3 * np.abs(xy).max())


def test_matrix_serves_every_head_and_jobs_never_block_other_requests(logged, load):
    loaded = load(logged)
    n = sum(LENGTHS)
    resp = loaded.get("embedding_matrix", run="a", tag="sents", step=0)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    meta, arrays = codec.unpack(resp.get_data())
    assert arrays["xy"].shape == (L, H, 2 * n, 2) and arrays["xy"].dtype == np.uint8
    assert arrays["faithfulness"].shape == (L, H) and np.isfinite(arrays["faithfulness"]).all()
    assert arrays["mixing"].shape == (L, H)  # NaN until a head is opened (PCA fast path)
    assert meta["num_queries"] == n
    started = loaded.get("embedding_matrix", run="a", tag="sents", step=0, method="faithful")
    t0 = time.perf_counter()
    assert loaded.get("embedding", run="a", tag="sents", step=0, layer=0, head=0).status_code == 200
    assert time.perf_counter() - t0 < 5
    assert started.status_code in (200, 202)
    done = _until_done(loaded, "embedding_matrix", run="a", tag="sents", step=0, method="faithful")
    _, faithful = codec.unpack(done.get_data())
    assert faithful["faithfulness"].mean() > arrays["faithfulness"].mean()


@pytest.fixture
def fresh(load, tmp_path_factory):
    """load(logdir) with a cache folder of its own: what it serves is computed by that server, never read back."""

    def _fresh(logdir):
        loaded = load(logdir)
        loaded.plugin._embedding._layouts.cache_dir = str(tmp_path_factory.mktemp("cache"))
        return loaded

    return _fresh


def test_matrix_layers_are_the_rows_of_the_whole_matrix(logged, load):
    loaded = load(logged)
    whole_meta, whole = codec.unpack(loaded.get("embedding_matrix", run="a", tag="sents", step=20).get_data())
    assert "layers" not in whole_meta
    for layers, rows in (("1", [1]), ("0-1", [0, 1]), ("0-0", [0])):
        resp = loaded.get("embedding_matrix", run="a", tag="sents", step=20, layers=layers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        meta, part = codec.unpack(resp.get_data())
        assert meta["layers"] == [rows[0], rows[-1]] and meta["num_queries"] == whole_meta["num_queries"]
        for name in ("xy", "bbox", "faithfulness"):
            np.testing.assert_array_equal(part[name], whole[name][rows])
    # A nonlinear layout of one layer is its own job: the other layer is not computed for it.
    params = dict(run="a", tag="sents", step=20, method="faithful")
    done = _until_done(loaded, "embedding_matrix", layers="1", **params)
    assert codec.unpack(done.get_data())[1]["xy"].shape[:2] == (1, H)
    assert loaded.get("embedding_matrix", layers="0", **params).status_code == 202


def test_scores_beyond_the_limit_use_evenly_spaced_queries_and_say_so(logged, fresh, monkeypatch):
    from tb_attention.analysis import embedding_scores

    n = sum(LENGTHS)
    loaded = fresh(logged)
    params = dict(run="a", tag="sents", step=20, layer=1, head=2)
    full, _, _ = _layout(loaded.get("embedding", **params))
    assert full["score_sampled"] is False and full["score_queries"] == n
    monkeypatch.setattr(embedding_scores, "SCORE_QUERIES", 20)
    sampled_server = fresh(logged)
    meta, _, _ = _layout(sampled_server.get("embedding", **params))
    assert meta["score_sampled"] is True and meta["score_queries"] == 20
    assert meta["faithfulness"] != full["faithfulness"] and -1 <= meta["faithfulness"] <= 1
    again, _, _ = _layout(fresh(logged).get("embedding", **params))  # another server: the same sample
    assert again["faithfulness"] == meta["faithfulness"] and again["original"] == meta["original"]
    matrix_meta, _ = codec.unpack(sampled_server.get("embedding_matrix", run="a", tag="sents", step=20).get_data())
    assert matrix_meta["score_sampled"] is True and matrix_meta["score_queries"] == 20


def test_heads_beyond_the_point_limit_are_laid_out_on_a_deterministic_sample(logged, fresh, monkeypatch):
    from tb_attention.analysis import embedding

    n = sum(LENGTHS)
    monkeypatch.setattr(embedding, "MAX_POINTS", 60)
    loaded = fresh(logged)
    params = dict(run="a", tag="sents", step=20, layer=0, head=1)
    meta, arrays, xy = _layout(loaded.get("embedding", **params))
    index = arrays["index"]
    assert meta["points_sampled"] is True and (meta["total_queries"], meta["total_keys"]) == (n, n)
    assert len(index) == len(xy) == len(arrays["norm"]) == meta["num_queries"] + meta["num_keys"] <= 60
    assert index.dtype == np.int32 and (np.diff(index) > 0).all() and index[0] == 0 and index[-1] == 2 * n - 1
    assert (index < n).sum() == meta["num_queries"]
    _, other, other_xy = _layout(fresh(logged).get("embedding", **params))  # another server: the same points
    np.testing.assert_array_equal(other["index"], index)
    np.testing.assert_array_equal(other_xy, xy)
    _, faithful, _ = _layout(_until_done(loaded, "embedding", method="faithful", **params))
    np.testing.assert_array_equal(faithful["index"], index)
    matrix_meta, matrix = codec.unpack(loaded.get("embedding_matrix", run="a", tag="sents", step=20).get_data())
    assert matrix["xy"].shape == (L, H, len(index), 2) and matrix_meta["num_queries"] == meta["num_queries"]
    np.testing.assert_array_equal(matrix["index"], index)
    monkeypatch.setattr(embedding, "MAX_POINTS", 20_000)
    whole_meta, whole, _ = _layout(fresh(logged).get("embedding", **params))
    assert "index" not in whole and "points_sampled" not in whole_meta


BAD_REQUESTS = [
    (
        "embedding",
        {"tag": "sents", "step": "0", "layer": "0", "head": "0", "method": "mds"},
        400,
        "'method' must be one of",
    ),
    ("embedding", {"tag": "sents", "step": "0", "layer": "0", "head": "0", "translate": "2"}, 400, "must be 0 or 1"),
    ("embedding", {"tag": "sents", "step": "0", "layer": "2", "head": "0"}, 404, "layer 2 out of range"),
    ("embedding", {"tag": "sents", "step": "0", "layer": "0", "head": "4"}, 404, "head 4 out of range"),
    ("embedding", {"tag": "sents", "step": "0", "layer": "0"}, 400, "missing parameter 'head'"),
    ("embedding", {"tag": "sents", "step": "5", "layer": "0", "head": "0"}, 404, "step 5 is not loaded"),
    ("embedding", {"tag": "nope", "step": "0", "layer": "0", "head": "0"}, 404, "no probe or probe batch"),
    ("embedding", {"tag": "plain", "step": "0", "layer": "0", "head": "0"}, 404, "not logged"),
    (
        "embedding",
        {"run": "zz", "tag": "sents", "step": "0", "layer": "0", "head": "0"},
        404,
        "no attention probes in run",
    ),
    ("embedding_matrix", {"tag": "sents", "step": "x"}, 400, "non-negative integer"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "scale": "yes"}, 400, "must be 0 or 1"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "1-0"}, 400, "empty range"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "0-"}, 400, "'a' or 'a-b'"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "-1"}, 400, "'a' or 'a-b'"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "0,1"}, 400, "'a' or 'a-b'"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "١"}, 400, "'a' or 'a-b'"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "2"}, 404, "out of range"),
    ("embedding_matrix", {"tag": "sents", "step": "0", "layers": "1-2"}, 404, "out of range"),
    ("embedding_info", {"tag": "nope"}, 404, "no probe or probe batch"),
    ("embedding_info", {}, 400, "missing parameter 'tag'"),
]


def test_bad_requests_get_4xx_with_a_message(logged, load):
    loaded = load(logged)
    for route, params, status, message in BAD_REQUESTS:
        resp = loaded.get(route, **{"run": "a", **params})
        text = resp.get_data(as_text=True)
        assert resp.status_code == status, (route, params, text)
        assert message in text and "Traceback" not in text, (route, params, text)


def test_tsne_is_warm_started_from_the_previous_step_and_missing_libraries_are_a_400(logged, load, monkeypatch):
    pytest.importorskip("sklearn")
    loaded = load(logged)
    # In the server thread (the fallback when no worker process can start): scikit-learn is imported once per
    # test session instead of once per worker process. The worker path is covered by the faithful tests.
    loaded.plugin._embedding._layouts.worker_failed = True
    params = dict(run="a", tag="sents", layer=0, head=0, method="tsne")
    meta0, _, _ = _layout(_until_done(loaded, "embedding", step=0, **params))
    assert meta0["warm_start"] is False and meta0["aligned"] is True
    meta10, _, _ = _layout(_until_done(loaded, "embedding", step=10, **params))
    assert meta10["warm_start"] is True
    from tb_attention.serve import embedding_routes

    monkeypatch.setattr(embedding_routes, "available", lambda m: m in ("pca", "faithful"))
    resp = loaded.get("embedding", step=0, **dict(params, method="umap"))
    assert resp.status_code == 400 and "umap-learn" in resp.get_data(as_text=True)
    assert loaded.get("embedding_batches").get_json()["methods"]["tsne"] is False


def test_add_attention_batch_checks_its_lists_and_steps_before_writing(tmp_path):
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(1, 2, 4, D)).astype(np.float32), rng.normal(size=(1, 2, 4, D)).astype(np.float32)
    attn = _attention(q, k)
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="one per input"):
            w.add_attention_batch("b", [attn, attn], tokens=[list("abcd")], step=0)
        with pytest.raises(ValueError, match="at least one input"):
            w.add_attention_batch("b", [], tokens=[], step=0)
        assert w.add_attention_batch(
            "b", [attn, attn], tokens=[list("abcd")] * 2, step=0, queries=[q, q], keys=[k, k]
        ) == ["b/0", "b/1"]
        with pytest.raises(ValueError, match="not after the last logged step"):
            w.add_attention_batch("b", [attn, attn], tokens=[list("abcd")] * 2, step=0)


def test_a_failed_layout_job_is_answered_once_with_its_status_then_retried(logged, load, monkeypatch):
    from tb_attention.serve import embedding_layouts
    from tb_attention.serve.probe_reader import CorruptDataError

    calls = []

    def failing(self, *args):
        calls.append(args)
        time.sleep(0.3)  # still running when the first request is answered
        raise CorruptDataError("layer 0: stored data cannot be decoded: damaged data")

    monkeypatch.setattr(embedding_layouts.Layouts, "nonlinear", failing)
    loaded = load(logged)
    params = dict(run="a", tag="sents", step=0, layer=0, head=0, method="faithful")
    first = loaded.get("embedding", **params)
    assert first.status_code == 202
    loaded.plugin._embedding.wait(30)
    for _ in range(5):  # polling while nobody has seen the failure never starts the job again
        failed = loaded.get("embedding", **params)
        if failed.status_code != 202:
            break
        loaded.plugin._embedding.wait(30)
    assert failed.status_code == 422 and "damaged data" in failed.get_data(as_text=True)
    assert len(calls) == 1
    retry = loaded.get("embedding", **params)  # the failure was answered: a new request starts afresh
    assert retry.status_code == 202
    loaded.plugin._embedding.wait(30)
    assert len(calls) == 2
