"""Stored data the plugin reads is untrusted: damaged manifests, flipped bits on the loader that checks no record CRC,
damaged metrics and q/k. Every route answers 200 with the right data or 4xx with a message, never 500 or wrong data."""

import glob
import os

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import manifest, metadata
from tb_attention.write import encode
from tests.conftest import softmax_attention, write_raw_probe

CONTENT = {"version": metadata.VERSION, "kind": "probe"}
STEP_ROUTES = [
    ("tokens", {}),
    ("attention", {"layer": 0}),
    ("qk", {"layer": 0}),
    ("image", {}),
    ("rollout", {}),
    ("head_diff", {"step_b": 1}),
    ("embedding", {"layer": 0, "head": 0}),
    ("embedding_matrix", {}),
]


def _event_file(run_dir):
    (path,) = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    return path


def _good_blobs(rng, qk=True):
    attn = softmax_attention(rng, 1, 2, 3)
    q = rng.normal(size=(1, 2, 3, 4)).astype(np.float32) if qk else None
    return encode.probe_blobs(attn, q, q, ["hello", "brave", "world"], None)


def _manifest_with(rng, **change):
    fields = encode.manifest(softmax_attention(rng, 1, 2, 3), None, None, list("abc"), None)
    fields.update(change)
    return manifest.encode(fields)


@pytest.fixture
def damaged_logdir(tmp_path, rng):
    good = _good_blobs(rng, qk=False)
    cases = {
        "no_blobs": [],
        "layers_as_text": [_manifest_with(rng, num_layers="1"), good[1]],
        "layers_as_float": [_manifest_with(rng, num_layers=1.0), good[1]],
        "json_list": [manifest.encode([1, 2, 3]), good[1]],
        "not_json": [b"TBM1\x00\x00\x00\x00{", good[1]],
        "tokens_too_few": [_manifest_with(rng, tokens=["a"]), good[1]],
    }
    for tag, blobs in cases.items():
        write_raw_probe(tmp_path / "run", tag, blobs, CONTENT, step=1)
    return tmp_path, sorted(cases)


def test_every_route_answers_a_damaged_manifest_with_422(damaged_logdir, load):
    logdir, tags = damaged_logdir
    loaded = load(logdir)
    for tag in tags:
        assert loaded.get("steps", run="run", tag=tag).get_json()["steps"] == [1]
        for route, extra in STEP_ROUTES:
            resp = loaded.get(route, run="run", tag=tag, step=1, **extra)
            text = resp.get_data(as_text=True)
            assert resp.status_code == 422, (tag, route, resp.status_code, text)
            assert "manifest" in text or "no blobs" in text, (tag, route, text)
        info = loaded.get("embedding_info", run="run", tag=tag)
        assert info.status_code == 422, (tag, info.get_data(as_text=True))


def test_a_flipped_bit_in_a_token_is_never_served_as_another_token(tmp_path, rng, load):
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", softmax_attention(rng, 1, 2, 3), tokens=["hello", "brave", "world"], step=1)
    path = _event_file(tmp_path / "run")
    data = bytearray(open(path, "rb").read())
    data[data.index(b"brave") + 2] ^= 0x01  # "brave" -> "bsave"; the record CRC no longer matches either
    open(path, "wb").write(bytes(data))
    resp = load(tmp_path).get("tokens", run="run", tag="p", step=1)
    # Rust loader (no record CRCs): our checksum answers 422. Python loader: the record is dropped (404).
    assert resp.status_code in (404, 422), resp.get_data(as_text=True)
    assert b"bsave" not in resp.get_data()


def test_the_largest_int64_step_is_listed_and_served(tmp_path, rng, load):
    write_raw_probe(tmp_path / "run", "p", _good_blobs(rng), CONTENT, step=2**63 - 1)
    loaded = load(tmp_path)
    assert loaded.get("steps", run="run", tag="p").get_json()["steps"] == [2**63 - 1]
    resp = loaded.get("tokens", run="run", tag="p", step=str(2**63 - 1))
    assert resp.status_code == 200 and resp.get_json()["tokens"] == ["hello", "brave", "world"]


def test_damaged_queries_and_keys_answer_422_on_the_embedding_routes(tmp_path, rng, load):
    blobs = _good_blobs(rng)
    blobs[2] = blobs[2][:-16]  # truncated q/k container of layer 0
    write_raw_probe(tmp_path / "run", "p", blobs, CONTENT, step=1)
    loaded = load(tmp_path)
    for route, extra in [("embedding", {"layer": 0, "head": 0}), ("embedding_matrix", {})]:
        resp = loaded.get(route, run="run", tag="p", step=1, **extra)
        assert resp.status_code == 422, (route, resp.get_data(as_text=True))
        assert "layer 0" in resp.get_data(as_text=True)
    assert loaded.get("qk", run="run", tag="p", step=1, layer=0).status_code == 422


def test_a_flipped_bit_in_a_metric_shows_a_gap_not_a_wrong_number(tmp_path, rng, load, request):
    attn = softmax_attention(rng, 1, 2, 6)
    with AttentionWriter(str(tmp_path / "run")) as w:
        for step in range(4):
            w.add_metrics("p", attn, step=step)
            w.flush()
    path = _event_file(tmp_path / "run")
    data = bytearray(open(path, "rb").read())
    # The max_weight values of every step are the same bytes; damage the third occurrence (step 2).
    values = encode.metric_values(attn, {})["max_weight"].astype("<f4").tobytes()
    at = -1
    for _ in range(3):
        at = data.index(values, at + 1)
    data[at + 1] ^= 0x40
    open(path, "wb").write(bytes(data))
    from tb_attention.format import codec

    loaded = load(tmp_path)
    meta, arrays = codec.unpack(loaded.get("head_stats", run="run", tag="p").get_data())
    steps = list(arrays["steps"])
    expected = encode.metric_values(attn, {})["max_weight"]
    for s, row in zip(steps, arrays["max_weight"]):
        if s == 2:
            assert np.isnan(row).all()  # damaged: a gap
        else:
            np.testing.assert_allclose(row, expected, rtol=1e-6)
    if request.node.callspec.params["load"] == "rust":
        assert meta["damaged_steps"] == [2] and steps == [0, 1, 2, 3]
    else:
        assert 2 not in steps or meta["damaged_steps"] == [2]  # the Python loader drops the record itself
