"""Routes the views use beyond the basics: one head of a layer (`attention?head=`), on both data loaders."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import softmax_attention

L, H, T = 2, 3, 7


@pytest.fixture
def logdir(tmp_path, rng):
    attn = softmax_attention(rng, L, H, T)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("probe/p", attn, tokens=[f"t{i}" for i in range(T)], step=5)
    return tmp_path, attn


def test_one_head_is_the_slice_of_the_layer(logdir, load):
    path, attn = logdir
    loaded = load(path)
    for layer in range(L):
        full = loaded.get("attention", run="run", tag="probe/p", step=5, layer=layer)
        assert full.status_code == 200
        meta_full, arrays_full = codec.unpack(full.get_data())
        for head in range(H):
            resp = loaded.get("attention", run="run", tag="probe/p", step=5, layer=layer, head=head)
            assert resp.status_code == 200, resp.get_data(as_text=True)
            assert resp.mimetype == "application/octet-stream"
            meta, arrays = codec.unpack(resp.get_data())
            assert meta == dict(meta_full, head=head)
            assert arrays["codes"].shape == (1, T, T) and arrays["row_exp"].shape == (1, T)
            np.testing.assert_array_equal(arrays["codes"][0], arrays_full["codes"][head])
            np.testing.assert_array_equal(arrays["row_exp"][0], arrays_full["row_exp"][head])
            decoded = codec.decode_attention(resp.get_data())[0]
            assert np.all(np.abs(decoded - attn[layer, head]) <= codec.cbrt8_error_bound(attn[layer, head]) + 1e-7)


@pytest.mark.parametrize("head, status", [(str(H), 404), ("-1", 400), ("x", 400), ("", 400)])
def test_bad_head_is_a_clear_error(logdir, load, head, status):
    loaded = load(logdir[0])
    resp = loaded.get("attention", run="run", tag="probe/p", step=5, layer=0, head=head)
    assert resp.status_code == status
    assert "Traceback" not in resp.get_data(as_text=True)


def test_segments_are_served_in_the_manifest(tmp_path, rng, load):
    attn = softmax_attention(rng, 1, 2, 5)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("probe/pair", attn, tokens=list("abcde"), step=1, segments=[0, 0, 0, 1, 1])
        w.add_attention("probe/single", attn, tokens=list("abcde"), step=1)
    loaded = load(tmp_path)
    assert loaded.get("tokens", run="run", tag="probe/pair", step=1).get_json()["segments"] == [0, 0, 0, 1, 1]
    assert "segments" not in loaded.get("tokens", run="run", tag="probe/single", step=1).get_json()


@pytest.mark.parametrize(
    "segments, error",
    [
        ([0, 1], ValueError),
        ([0, 0, 1, 1, -1], ValueError),
        ([0, 0, 1, 1, True], ValueError),
        ("00011", TypeError),
        ([0, 0, 1, 1, 1.5], ValueError),
    ],
)
def test_bad_segments_are_refused_before_writing(tmp_path, rng, segments, error):
    attn = softmax_attention(rng, 1, 2, 5)
    with AttentionWriter(str(tmp_path / "run")) as w:
        with pytest.raises(error, match="segments"):
            w.add_attention("probe/pair", attn, tokens=list("abcde"), step=1, segments=segments)
        w.add_attention("probe/pair", attn, tokens=list("abcde"), step=1, segments=np.array([0, 0, 1, 1, 1]))
