"""add_metrics(..., layers=): the metrics series record the model's layer/head indices in their plugin content, which
both TensorBoard loaders keep; a series keeps the numbering it started with."""

import numpy as np
import pytest
from tensorboard import context

from tb_attention import AttentionWriter
from tb_attention.format import codec, stats
from tests.conftest import softmax_attention
from tests.qk_util import written


def test_metrics_only_tags_record_the_models_numbering(tmp_path, rng, load):
    attn = softmax_attention(rng, 2, 2, 5)
    layers = [3, {"index": 9, "heads": np.array([0, 5]), "scaling": 0.5}]  # recompute parameters are dropped
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_metrics("m", attn, step=0, layers=layers)
        w.add_metrics("m", attn, step=1)  # the numbering stays the series'
        w.add_metrics("m", attn, step=2, layers=layers)
        w.add_metrics("plain", attn, step=0)
        w.add_attention("probe", attn, tokens=list("abcde"), step=0, layers=[{"index": 4, "heads": [1, 2]}, 6])
        with pytest.raises(ValueError, match=r"'m' were first logged with layers=\[\{'index': 3\}"):
            w.add_metrics("m", attn, step=3, layers=[3, 8])
    expected = [{"index": 3}, {"index": 9, "heads": [0, 5]}]
    _, _, contents = written(tmp_path / "r")
    assert all(c["layers"] == expected for c in contents["m"].values()) and len(contents["m"]) == 9
    assert all("layers" not in c for c in contents["plain"].values())
    assert contents["probe"]["entropy"]["layers"] == [{"index": 4, "heads": [1, 2]}, {"index": 6}]
    loaded = load(tmp_path)
    series = loaded.plugin._reader.head_stat_series(context.RequestContext(), "")["r"]
    assert series["m/_entropy"]["layers"] == expected and series["m/_induction"]["probe"] == "m"
    # The head_stats route passes the numbering on (meta.layers); a series without one has none.
    meta, _ = codec.unpack(loaded.get("head_stats", run="r", tag="m").data)
    assert meta["layers"] == expected
    assert "layers" not in codec.unpack(loaded.get("head_stats", run="r", tag="plain").data)[0]
    assert loaded.get("runs").get_json()["runs"][0]["metrics_only"] == ["m", "plain"]


def test_a_numbering_that_does_not_fit_the_metrics_is_dropped():
    arrays = {"entropy": {0: np.zeros((2, 3), np.float32)}}
    fits = [{"index": 4}, {"index": 7, "heads": [1, 2, 5], "scaling": 0.5}]
    meta, _ = codec.unpack(stats.head_stats(arrays, {0: 1.0}, {}, fits))
    assert meta["layers"] == [{"index": 4}, {"index": 7, "heads": [1, 2, 5]}]
    for bad in ([{"index": 4}], [{"index": 4}, {"index": 4}], [{"index": 1}, {"index": 2, "heads": [0, 1]}], "x"):
        assert "layers" not in codec.unpack(stats.head_stats(arrays, {0: 1.0}, {}, bad))[0]
