"""Levels of detail (`tile`, `lod`, `topk`) and the attention/qk routes of a "qk" layer, on both data loaders,
against brute force over the full weights (docs/http_api.md)."""

import numpy as np
import pytest

from tb_attention.analysis import recompute
from tb_attention.format import codec
from tb_attention.serve import lod_routes
from tests.conftest import write_raw_probe
from tests.serve.qk_probes import CONTENT, brute_tile, qk_step

Q = 300  # two tiles per side at level 0, one at level 1 (levels = 1), and the overview's cells are not the tiles'


@pytest.fixture
def probes(tmp_path):
    """The same q/k stored as "qk" (tag qk), as weights (tag w) and q/k-only without a stored top-k (tag nok)."""
    rng = np.random.default_rng(7)
    blobs, weights, q, k = qk_step(rng, layers=2, heads=2, kv_heads=1, q_len=Q)
    write_raw_probe(tmp_path / "run", "qk", blobs, CONTENT, step=3)
    stored, _, _, _ = qk_step(np.random.default_rng(7), layers=2, heads=2, kv_heads=1, q_len=Q, storage="weights")
    write_raw_probe(tmp_path / "run", "w", stored, CONTENT, step=3)
    nok, _, _, _ = qk_step(np.random.default_rng(7), layers=2, heads=2, kv_heads=1, q_len=Q, topk=0)
    write_raw_probe(tmp_path / "run", "nok", nok, CONTENT, step=3)
    decoded = np.stack([codec.decode_attention(codec.decompress(b)) for b in stored[1:3]])
    return tmp_path, weights, decoded


def _get(loaded, route, tag="qk", **params):
    resp = loaded.get(route, run="run", tag=tag, step=3, **params)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return codec.unpack(resp.get_data())


def _close_codes(got, want):
    assert got.shape == want.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_tiles_are_the_max_pool_of_the_weights_for_every_storage(probes, load):
    path, weights, decoded = probes
    loaded = load(path)
    for layer, head in [(0, 0), (1, 1)]:
        for level, tiles_per_side in [(0, 2), (1, 1)]:
            for row in range(tiles_per_side):
                for col in range(tiles_per_side):
                    at = dict(layer=layer, head=head, level=level, row=row, col=col)
                    meta, qk = _get(loaded, "tile", **at)
                    assert meta["source"] == "recomputed" and meta["levels"] == 1 and meta["tile"] == 256
                    _close_codes(qk["codes"], recompute.cbrt_codes(brute_tile(weights[layer, head], level, row, col)))
                    meta, w = _get(loaded, "tile", tag="w", **at)
                    assert meta["source"] == "weights"
                    _close_codes(w["codes"], recompute.cbrt_codes(brute_tile(decoded[layer, head], level, row, col)))
                    # The two storages agree within the cbrt8 bound (plus half a code of each tile's rounding).
                    a, b = recompute.decode_codes(qk["codes"]), recompute.decode_codes(w["codes"])
                    bound = brute_tile(codec.cbrt8_error_bound(weights[layer, head]), level, row, col)
                    half_code = 0.0059 * np.maximum(a, b) ** (2 / 3) + 1e-7
                    assert np.all(np.abs(a - b) <= bound + 2 * half_code)


def test_the_coarsest_tile_is_the_stored_overview_when_its_cells_match(tmp_path, load):
    blobs, weights, _, _ = qk_step(np.random.default_rng(3), heads=1, q_len=512, mask="none")
    write_raw_probe(tmp_path / "run", "qk", blobs, CONTENT, step=3)
    loaded = load(tmp_path)
    meta, arrays = _get(loaded, "tile", layer=0, head=0, level=1, row=0, col=0)
    assert meta["source"] == "overview" and meta["levels"] == 1
    _close_codes(arrays["codes"], recompute.cbrt_codes(brute_tile(weights[0, 0], 1, 0, 0)))
    meta, arrays = _get(loaded, "tile", layer=0, head=0, level=0, row=1, col=0)
    assert meta["source"] == "recomputed"
    _close_codes(arrays["codes"], recompute.cbrt_codes(brute_tile(weights[0, 0], 0, 1, 0)))


def _brute_lod(w, size):
    re_, ce = recompute.pool_edges(w.shape[-2], size), recompute.pool_edges(w.shape[-1], size)
    return np.stack([[[h[a:b, c:d].max() for c, d in zip(ce, ce[1:])] for a, b in zip(re_, re_[1:])] for h in w])


def test_thumbnails_are_pooled_from_the_overview_or_the_weights(probes, load):
    path, weights, decoded = probes
    loaded = load(path)
    meta, arrays = _get(loaded, "lod", layer=1)  # default size 64: divides 256, so exact from the overview
    assert meta == {"query_len": Q, "key_len": Q, "size": 64, "source": "stored", "exact": True}
    _close_codes(arrays["thumbs"], recompute.cbrt_codes(_brute_lod(weights[1], 64)))
    meta, arrays = _get(loaded, "lod", tag="w", layer=1, size=100)
    assert meta["source"] == "weights" and meta["exact"] and arrays["thumbs"].shape == (2, 100, 100)
    _close_codes(arrays["thumbs"], recompute.cbrt_codes(_brute_lod(decoded[1], 100)))
    # A size whose cells are not overview cells: each cell covers the overview cells it meets (never smaller).
    meta, arrays = _get(loaded, "lod", layer=1, size=100)
    assert not meta["exact"]
    assert np.all(arrays["thumbs"].astype(int) >= recompute.cbrt_codes(_brute_lod(weights[1], 100)).astype(int) - 1)


def test_topk_from_storage_weights_or_recomputed_for_one_head(probes, load):
    path, weights, decoded = probes
    loaded = load(path)
    meta, arrays = _get(loaded, "topk", layer=0)
    assert meta == {"k": 4, "source": "stored"} and arrays["keys"].dtype == np.int32
    order = np.argsort(-weights[0], axis=-1, kind="stable")[..., :4]
    seen = np.take_along_axis(weights[0], order, axis=-1) > 0  # zeros (masked keys) tie: any of them may pad
    np.testing.assert_array_equal(arrays["keys"][seen], order[seen])
    meta, arrays = _get(loaded, "topk", tag="w", layer=0, head=1)
    assert meta == {"k": 8, "source": "weights", "head": 1} and arrays["keys"].shape == (1, Q, 8)
    top = np.take_along_axis(decoded[0, 1], arrays["keys"][0], axis=-1)
    assert np.all(np.diff(top, axis=-1) <= 0)  # descending
    np.testing.assert_allclose(np.sort(top, -1), np.sort(-np.partition(-decoded[0, 1], 8, -1)[:, :8], -1))
    meta, arrays = _get(loaded, "topk", tag="nok", layer=0, head=1)
    assert meta == {"k": 8, "source": "recomputed", "head": 1}
    order = np.argsort(-weights[0, 1], axis=-1, kind="stable")[:, :8]
    seen = np.take_along_axis(weights[0, 1], order, axis=-1) > 0
    np.testing.assert_array_equal(arrays["keys"][0][seen], order[seen])
    _close_codes(arrays["codes"][0], recompute.cbrt_codes(-np.sort(-weights[0, 1], -1)[:, :8]))
    resp = loaded.get("topk", run="run", tag="nok", step=3, layer=0)
    assert resp.status_code == 400 and "head=" in resp.get_data(as_text=True)


def test_a_qk_layer_is_rebuilt_for_the_attention_route_within_its_bound(probes, load, monkeypatch):
    path, weights, _ = probes
    loaded = load(path)
    meta, arrays = _get(loaded, "attention", layer=1, head=1)
    assert meta == {"encoding": "cbrt8", "recomputed": True, "head": 1} and arrays["codes"].shape == (1, Q, Q)
    got = codec.decode_cbrt8(arrays["codes"], arrays["row_exp"])[0]
    assert np.all(np.abs(got - weights[1, 1]) <= codec.cbrt8_error_bound(weights[1, 1]) + 1e-7)
    meta, arrays = _get(loaded, "attention", layer=0)
    assert "head" not in meta and arrays["codes"].shape == (2, Q, Q)
    monkeypatch.setattr(lod_routes, "MAX_REBUILT", 2 * Q * Q - 1)
    resp = loaded.get("attention", run="run", tag="qk", step=3, layer=0)
    assert resp.status_code == 413 and "one head" in resp.get_data(as_text=True)
    assert loaded.get("attention", run="run", tag="qk", step=3, layer=0, head=0).status_code == 200
    assert loaded.get("attention", run="run", tag="w", step=3, layer=0).status_code == 200  # stored: as it is


def test_qk_of_one_head_is_its_queries_and_its_key_head(tmp_path, load):
    rng = np.random.default_rng(5)
    blobs, _, q, k = qk_step(rng, heads=4, kv_heads=2, q_len=20, bias="relative", mask="none")
    write_raw_probe(tmp_path / "run", "qk", blobs, CONTENT, step=3)
    loaded = load(tmp_path)
    meta, arrays = _get(loaded, "qk", layer=0, head=3)
    assert meta["head"] == 3 and meta["kv_head"] == 1
    np.testing.assert_array_equal(arrays["queries"], q[0, 3:4])
    np.testing.assert_array_equal(arrays["keys"], k[0, 1:2])
    _, slot = codec.unpack(blobs[1])
    np.testing.assert_array_equal(arrays["bias"], slot["bias"][3:4])
    meta, arrays = _get(loaded, "qk", layer=0)
    assert arrays["queries"].shape == (4, 20, 8) and "bias" not in arrays


@pytest.mark.parametrize(
    "route, params, status, words",
    [
        ("tile", dict(head=0, level=2, row=0, col=0), 404, "coarsest level 1"),
        ("tile", dict(head=0, level=0, row=2, col=0), 404, "outside head 0"),
        ("tile", dict(head=0, level=1, row=0, col=1), 404, "outside"),
        ("tile", dict(head=0, level=0, row=0, col=99999999999999999999), 400, "col"),
        ("tile", dict(head=2, level=0, row=0, col=0), 404, "head 2 out of range"),
        ("tile", dict(level=0, row=0, col=0), 400, "head"),
        ("tile", dict(head=0, level="x", row=0, col=0), 400, "level"),
        ("tile", dict(head=0, level=0, row=-1, col=0), 400, "row"),
        ("lod", dict(size=8), 400, "size"),
        ("lod", dict(size=257), 400, "size"),
        ("topk", dict(head=9), 404, "head 9"),
        ("attention", dict(head=2), 404, "head 2"),
        ("qk", dict(head=2), 404, "head 2"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(probes, load, route, params, status, words):
    loaded = load(probes[0])
    resp = loaded.get(route, run="run", tag="qk", step=3, layer=0, **params)
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert words in text and "Traceback" not in text
    assert loaded.get(route, run="run", tag="qk", step=3, layer=2, head=0, level=0, row=0, col=0).status_code == 404


def _damaged(blobs, which):
    blobs = list(blobs)
    if which == "flipped_bit":
        raw = bytearray(blobs[1])
        raw[-3] ^= 0x10
        blobs[1] = bytes(raw)
    elif which == "short_lse":
        _, arrays = codec.unpack(blobs[1])
        arrays = dict(arrays, lse=arrays["lse"][:, :-1])
        blobs[1] = codec.pack(arrays, {"encoding": "recompute"})
    elif which == "weights_slot":  # a cbrt8 container where the manifest says "qk"
        blobs[1] = codec.attention_container(np.full((2, Q, Q), 1.0 / Q, np.float32))
    return blobs


@pytest.mark.parametrize("which", ["flipped_bit", "short_lse", "weights_slot"])
def test_a_damaged_recompute_container_is_422_on_every_route(tmp_path, load, which):
    blobs, _, _, _ = qk_step(np.random.default_rng(1), heads=2, q_len=Q)
    write_raw_probe(tmp_path / "run", "bad", _damaged(blobs, which), CONTENT, step=3)
    loaded = load(tmp_path)
    at = dict(run="run", tag="bad", step=3, layer=0)
    for route, extra in [("tile", dict(head=0, level=0, row=0, col=0)), ("lod", {}), ("topk", {}), ("attention", {})]:
        resp = loaded.get(route, **at, **extra)
        text = resp.get_data(as_text=True)
        assert resp.status_code == 422, (route, text)
        assert "layer 0" in text and "Traceback" not in text
