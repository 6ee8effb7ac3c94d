"""Format version 3: the per-layer `storage` list and the `recompute` container of a q/k-only layer are validated
once, and anything a reader could misread is refused with a message naming the field."""

import numpy as np
import pytest

from tb_attention.format import codec, manifest

BASE = {
    "version": 3,
    "tokens": ["a", "b", "c"],
    "key_tokens": None,
    "num_layers": 2,
    "num_heads": 2,
    "query_len": 3,
    "key_len": 3,
    "has_qk": True,
    "num_kv_heads": 1,
    "d_head": 4,
}
GOOD_LAYER = {"index": 0, "scaling": 0.5, "mask": "causal", "offset": 0, "bias": "none"}


def _fields(**extra):
    return {**BASE, "layers": [GOOD_LAYER, {**GOOD_LAYER, "index": 1}], **extra}


def test_storage_round_trips_and_says_which_layers_hold_weights():
    m = manifest.decode(manifest.encode(_fields(storage=["qk", "both"])))
    assert m.storage == ["qk", "both"]
    assert [m.weights_stored(i) for i in range(2)] == [False, True]
    assert manifest.decode(manifest.encode(_fields())).weights_stored(1)  # absent: weights everywhere


@pytest.mark.parametrize(
    "fields, message",
    [
        (_fields(storage=["qk"]), "storage must be a list of 2"),
        (_fields(storage=["qk", "bogus"]), "storage must be"),
        ({**_fields(storage=["qk", "weights"]), "has_qk": False, "num_kv_heads": None, "d_head": None}, "no q/k"),
        ({**_fields(storage=["qk", "weights"]), "layers": None}, "unknown scaling, mask"),
        (
            _fields(storage=["qk", "weights"], layers=[{**GOOD_LAYER, "mask": "tensor"}, GOOD_LAYER | {"index": 1}]),
            "tensor",
        ),
        (
            _fields(storage=["qk", "weights"], layers=[{**GOOD_LAYER, "bias": "additive"}, GOOD_LAYER | {"index": 1}]),
            "additive",
        ),
        (
            _fields(storage=["qk", "weights"], layers=[{**GOOD_LAYER, "scaling": None}, GOOD_LAYER | {"index": 1}]),
            "scaling",
        ),
    ],
)
def test_a_qk_layer_that_cannot_be_rebuilt_is_refused(fields, message):
    with pytest.raises(manifest.ManifestError, match=message):
        manifest.decode(manifest.encode(fields))


def _container(heads=2, q=3, k=5, topk=2, key_len=None, **kw):
    rng = np.random.default_rng(0)
    return codec.recompute_container(
        rng.normal(size=(heads, q)).astype(np.float32),
        rng.integers(0, 255, (heads, min(q, 256), min(k, 256)), dtype=np.uint8),
        key_len or k,
        rng.integers(0, k, (heads, q, topk)),
        rng.integers(0, 255, (heads, q, topk), dtype=np.uint8),
        **kw,
    )


def test_recompute_container_round_trips_with_narrow_keys():
    meta, arrays = codec.decode_recompute(_container(bias=np.zeros((2, 7), np.float32), meta={"k": 2}), 2, 3, 5)
    assert meta["encoding"] == "recompute" and meta["k"] == 2
    assert arrays["topk_keys"].dtype == np.uint16 and arrays["bias"].shape == (2, 7)


@pytest.mark.parametrize(
    "blob, shape, message",
    [
        (_container(), (3, 3, 5), "lse must be float32 \\[3, 3\\]"),  # wrong head count
        (_container(), (2, 4, 5), "lse must be"),
        (_container(k=5), (2, 3, 4), "overview must be"),
        (_container(bias=np.zeros((2, 6), np.float32)), (2, 3, 5), "bias must be"),
        (codec.attention_container(np.full((2, 3, 5), 0.2, np.float32)), (2, 3, 5), "not 'recompute'"),
    ],
)
def test_recompute_container_shapes_are_checked(blob, shape, message):
    with pytest.raises(ValueError, match=message):
        codec.decode_recompute(blob, *shape)


def test_a_top_k_index_past_the_keys_is_damage():
    blob = codec.recompute_container(
        np.zeros((1, 2), np.float32),
        np.zeros((1, 2, 3), np.uint8),
        3,
        np.full((1, 2, 1), 3),
        np.zeros((1, 2, 1), np.uint8),
    )
    with pytest.raises(ValueError, match="past the last key"):
        codec.decode_recompute(blob, 1, 2, 3)
