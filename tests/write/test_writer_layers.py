"""add_attention(..., layers=): the model's layer/head indices and recompute parameters reach the served manifest;
bad entries are refused before anything is queued."""

import json

import numpy as np
import pytest
import torch

from tb_attention import AttentionWriter
from tests.conftest import softmax_attention


def test_layers_given_by_hand_are_served_with_the_manifest(tmp_path, rng, load):
    attn = softmax_attention(rng, 2, 2, 4)
    layers = [
        3,  # just the model's index
        {"index": np.int64(11), "heads": torch.tensor([0, 7]), "scaling": np.float32(0.125), "mask": "causal"},
    ]
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("p", attn, tokens=list("abcd"), step=0, layers=layers)
        w.add_attention("plain", attn, tokens=list("abcd"), step=0)
    loaded = load(tmp_path)
    served = json.loads(loaded.get("tokens", run="r", tag="p", step=0).get_data())
    assert served["layers"] == [{"index": 3}, {"index": 11, "heads": [0, 7], "scaling": 0.125, "mask": "causal"}]
    assert "layers" not in json.loads(loaded.get("tokens", run="r", tag="plain", step=0).get_data())


@pytest.mark.parametrize(
    "layers, error, message",
    [
        ([0], ValueError, "list of 2"),
        ("01", TypeError, "layers must be a list"),
        ([0, {"index": 1, "scale": 0.1}], ValueError, r"unknown keys \['scale'\]"),
        ([0, {"index": 1, "scaling": float("nan")}], ValueError, "finite"),
        ([0, {"index": 1, "heads": [0, 0]}], ValueError, "distinct"),
        ([0, 1.5], TypeError, "layer index or a dict"),
        ([0, {"index": "1"}], TypeError, "integer"),
    ],
)
def test_bad_layers_are_refused_and_the_step_can_be_logged_again(tmp_path, rng, layers, error, message):
    attn = softmax_attention(rng, 2, 2, 4)
    with AttentionWriter(str(tmp_path / "r")) as w:
        with pytest.raises(error, match=message):
            w.add_attention("p", attn, tokens=list("abcd"), step=0, layers=layers)
        w.add_attention("p", attn, tokens=list("abcd"), step=0, layers=[0, 1])  # nothing of the refusal remains
