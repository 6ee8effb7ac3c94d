"""The manifest's optional per-layer list (docs/format.md, "Layers"): the model's layer/head indices of the stored
ones and the parameters that recompute their weights; validated once, unknown keys ignored, absent = unknown."""

import pytest

from tb_attention.format import manifest
from tb_attention.write import encode
from tests.conftest import softmax_attention

GOOD = [
    {"index": 0, "heads": [0, 3], "scaling": 0.125, "mask": "causal", "offset": 0, "bias": "none"},
    {"index": 5, "heads": [0, 3], "softcap": 50.0, "mask": "sliding", "offset": 0, "window": 4, "sinks": [0.5, -1]},
]


def _fields(rng, layers):
    return encode.manifest(softmax_attention(rng, 2, 2, 5), None, None, list("abcde"), None, layers=layers)


def test_layers_round_trip_into_the_typed_manifest(rng):
    decoded = manifest.decode(manifest.encode(_fields(rng, GOOD)))
    assert decoded.layers == GOOD
    assert [entry["index"] for entry in decoded.layers] == [0, 5]
    assert decoded.raw["layers"][1]["heads"] == [0, 3]


def test_chunked_and_band_masks_carry_their_size(rng):
    layers = [dict(GOOD[0], mask="chunked", chunk=4), dict(GOOD[1], mask="band", window=0)]
    assert manifest.decode(manifest.encode(_fields(rng, layers))).layers == layers


def test_a_manifest_without_layers_has_none(rng):
    fields = _fields(rng, None)
    assert "layers" not in fields
    assert manifest.decode(manifest.encode(fields)).layers is None


def test_keys_a_reader_does_not_know_are_ignored(rng):
    layers = [dict(GOOD[0], future_field={"x": 1}), GOOD[1]]
    assert manifest.decode(manifest.encode(_fields(rng, layers))).layers[0]["future_field"] == {"x": 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda ls: ls[:1], "layers must be a list of 2 objects"),
        (lambda ls: [ls[0], dict(ls[1], index=0)], "layers[1].index 0 repeats"),
        (lambda ls: [dict(ls[0], index=-1), ls[1]], "layers[0].index"),
        (lambda ls: [dict(ls[0], index=True), ls[1]], "layers[0].index"),
        (lambda ls: [dict(ls[0], heads=[1, 1]), ls[1]], "layers[0].heads"),
        (lambda ls: [dict(ls[0], heads=[1]), ls[1]], "layers[0].heads"),
        (lambda ls: [dict(ls[0], scaling=0), ls[1]], "layers[0].scaling"),
        (lambda ls: [dict(ls[0], scaling="0.1"), ls[1]], "layers[0].scaling"),
        (lambda ls: [dict(ls[0], softcap=-1.0), ls[1]], "layers[0].softcap"),
        (lambda ls: [dict(ls[0], mask="diagonal"), ls[1]], "layers[0].mask"),
        (lambda ls: [ls[0], dict(ls[1], window=None)], "layers[1]: a sliding mask needs its window"),
        (lambda ls: [dict(ls[0], window=-1), ls[1]], "layers[0].window"),
        (lambda ls: [ls[0], dict(ls[1], window=0)], "layers[1]: a sliding window must be at least 1"),
        (lambda ls: [dict(ls[0], mask="chunked"), ls[1]], "layers[0]: a chunked mask needs its chunk"),
        (lambda ls: [dict(ls[0], mask="band"), ls[1]], "layers[0]: a band mask needs its window"),
        (lambda ls: [dict(ls[0], offset=1.5), ls[1]], "layers[0].offset"),
        (lambda ls: [dict(ls[0], bias=""), ls[1]], "layers[0].bias"),
        (lambda ls: [ls[0], dict(ls[1], sinks=[0.5])], "layers[1].sinks"),
        (lambda ls: [ls[0], dict(ls[1], kv_heads=[0])], "layers[1].kv_heads"),
        (lambda ls: [7, ls[1]], "layers[0] must be an object"),
    ],
)
def test_a_wrong_layers_entry_is_refused_naming_the_field(rng, change, message):
    fields = dict(_fields(rng, None), layers=change([dict(e) for e in GOOD]))
    with pytest.raises(manifest.ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        manifest.decode(manifest.encode(fields))
