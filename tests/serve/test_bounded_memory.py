"""A 32,768-token q/k-only head is served with bounded memory: the coarsest tile, fine and coarse tiles, top-k and
thumbnails under a budget far below one head's weights (4 GiB of float32), and the tile cache keeps its byte bound
(--attention_tile_cache_mb)."""

import argparse
import tracemalloc

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from tb_attention.analysis import recompute
from tb_attention.format import codec, manifest, metadata
from tb_attention.serve.loader import AttentionLoader
from tb_attention.serve.plugin import AttentionPlugin
from tests.conftest import _python_loader, write_raw_probe
from tests.serve.qk_probes import CONTENT, layer_entry

T, D, WINDOW = 32_768, 8, 64
BUDGET = 128 << 20  # bytes traced (measured: 50 MiB); one head's float32 weights would be 4 GiB, its codes 1 GiB
CACHE_MB = 0.2  # room for two or three level-0 tiles (64 KiB each)


def _band(rng):
    """q, k and the sliding-window head's weights as a band: w[i, d] is the weight of key i − d (d < WINDOW),
    computed without ever forming the T × T matrix; and the recompute container the writer would store."""
    q = (rng.normal(size=(T, D)) * 2.0).astype(np.float16)
    k = (rng.normal(size=(T, D)) * 2.0).astype(np.float16)
    scale = np.float32(1.0 / np.sqrt(D))
    rows = np.arange(T)[:, None]
    keys = rows - np.arange(WINDOW)[None, :]
    valid = keys >= 0
    logit = np.einsum("td,twd->tw", q.astype(np.float32) * scale, k.astype(np.float32)[np.maximum(keys, 0)])
    logit = np.where(valid, logit, -np.inf).astype(np.float32)
    top = logit.max(1, keepdims=True)
    lse = (top[:, 0] + np.log(np.exp(logit - top).sum(1))).astype(np.float32)
    w = np.exp(logit - lse[:, None]).astype(np.float32)
    overview = np.zeros((256, 256), np.float32)
    cell = T // 256
    np.maximum.at(overview, (np.broadcast_to(rows // cell, keys.shape)[valid], keys[valid] // cell), w[valid])
    order = np.argsort(-w, axis=1, kind="stable")[:, :4]
    top_keys = np.take_along_axis(np.maximum(keys, 0), order, 1)
    top_codes = recompute.cbrt_codes(np.take_along_axis(w, order, 1))
    slot = codec.recompute_container(
        lse[None], recompute.cbrt_codes(overview)[None], T, top_keys[None], top_codes[None], meta={"k": 4}
    )
    return q, k, w, keys, valid, slot


def _brute_tile(w, keys, valid, level, row, col):
    span, cell = recompute.TILE << level, 1 << level
    rows = np.broadcast_to(np.arange(T)[:, None], keys.shape)
    inside = valid & (rows // span == row) & (keys // span == col)
    out = np.zeros((min(span, T - row * span) // cell, min(span, T - col * span) // cell), np.float32)
    np.maximum.at(out, ((rows[inside] % span) // cell, (keys[inside] % span) // cell), w[inside])
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("long")
    q, k, w, keys, valid, slot = _band(np.random.default_rng(0))
    entry = layer_entry(0, D, mask="sliding", window=WINDOW)
    fields = {
        "version": metadata.VERSION,
        "tokens": ["t"] * T,
        "key_tokens": None,
        "num_layers": 1,
        "num_heads": 1,
        "query_len": T,
        "key_len": T,
        "has_qk": True,
        "num_kv_heads": 1,
        "d_head": D,
        "layers": [entry],
        "storage": ["qk"],
    }
    write_raw_probe(
        path / "run", "long", [manifest.encode(fields), slot, codec.qk_container(q[None], k[None])], CONTENT
    )
    provider, _ = _python_loader(path)
    flags = argparse.Namespace(attention_tile_cache_mb=CACHE_MB)
    plugin = AttentionPlugin(base_plugin.TBContext(data_provider=provider, sampling_hints={}, flags=flags))
    client = werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))

    def get(route, **params):
        resp = client.get(f"/data/plugin/attention/{route}", query_string=dict(run="run", tag="long", step=1, **params))
        return resp.status_code, resp.get_data()

    return get, plugin, (w, keys, valid)


def test_a_32k_qk_head_is_served_within_a_memory_budget(served):
    get, plugin, (w, keys, valid) = served
    get("tokens")  # the step listed and its manifest read before measuring
    tracemalloc.start()
    try:
        answers = {}
        for name, at in {
            "coarsest": dict(level=7, row=0, col=0),
            "coarse": dict(level=6, row=1, col=1),
            "diagonal": dict(level=0, row=100, col=100),
            "below": dict(level=0, row=100, col=99),
            "above": dict(level=0, row=100, col=101),
        }.items():
            status, body = get("tile", layer=0, head=0, **at)
            assert status == 200, body[:200]
            answers[name] = (at, *codec.unpack(body))
        status, topk = get("topk", layer=0, head=0)
        assert status == 200
        status, lod = get("lod", layer=0)
        assert status == 200
        status, message = get("attention", layer=0, head=0)
        assert status == 413 and b"tiles" in message
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BUDGET, f"peak {peak / 2**20:.0f} MiB"
    assert answers["coarsest"][1]["source"] == "overview" and answers["coarsest"][1]["levels"] == 7
    for name, (at, _, arrays) in answers.items():
        want = recompute.cbrt_codes(_brute_tile(w, keys, valid, **at))
        assert np.abs(arrays["codes"].astype(int) - want).max() <= 1, name
    assert not answers["above"][2]["codes"].any() and answers["below"][2]["codes"].any()
    meta, arrays = codec.unpack(topk)
    assert meta["source"] == "stored" and arrays["keys"].shape == (1, T, 4)
    meta, arrays = codec.unpack(lod)
    assert meta["source"] == "stored" and meta["exact"] and arrays["thumbs"].shape == (1, 64, 64)


def test_the_tile_cache_keeps_its_byte_bound(served):
    get, plugin, _ = served
    cache = plugin._lod.cache
    assert cache.max_bytes == int(CACHE_MB * 2**20)
    first = get("tile", layer=0, head=0, level=0, row=3, col=3)[1]
    for i in range(4, 10):
        assert get("tile", layer=0, head=0, level=0, row=i, col=i)[0] == 200
        assert 0 < cache.bytes <= cache.max_bytes
    assert 1 < len(cache) < 6
    assert get("tile", layer=0, head=0, level=0, row=3, col=3)[1] == first  # evicted, computed again, the same


@pytest.mark.parametrize("mb", [0, -1, float("inf"), float("nan")])
def test_the_tile_cache_flag_must_be_a_positive_number(mb):
    with pytest.raises(base_plugin.FlagsError, match="attention_tile_cache_mb"):
        AttentionLoader().fix_flags(argparse.Namespace(attention_tile_cache_mb=mb))
