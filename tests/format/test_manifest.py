"""The step manifest: every byte is covered by its checksum, every decoded manifest is validated, and no input, however
damaged, raises anything but ManifestError."""

import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tb_attention.format import manifest
from tb_attention.write import encode
from tests.conftest import softmax_attention


def _writer_manifest(rng, **extra):
    attn = softmax_attention(rng, 2, 4, 5)
    return encode.manifest(attn, None, None, ["a", "b", "ç", "\ud800", "<img>"], None, **extra)


def test_the_writers_manifest_round_trips(rng):
    fields = _writer_manifest(rng, segments=[0, 0, 1, 1, 1])
    decoded = manifest.decode(manifest.encode(fields))
    assert decoded.raw == fields
    assert (decoded.num_layers, decoded.num_heads, decoded.query_len, decoded.key_len) == (2, 4, 5, 5)
    assert decoded.tokens[3] == "\ud800" and decoded.blob_count() == 3


def test_version_1_manifests_without_a_checksum_stay_readable(rng):
    fields = dict(_writer_manifest(rng), version=1)
    assert manifest.decode(json.dumps(fields).encode()).raw == fields


def test_every_single_bit_flip_is_detected(rng):
    blob = manifest.encode(_writer_manifest(rng))
    for bit in range(len(blob) * 8):
        damaged = bytearray(blob)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            decoded = manifest.decode(bytes(damaged))
        except manifest.ManifestError:
            continue
        # A flip in the magic turns the blob into "version 1 JSON", which cannot parse: never a silent wrong token.
        pytest.fail(f"bit {bit} flipped and the manifest still decoded: {decoded.tokens}")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_manifest_error(blob):
    try:
        manifest.decode(blob)
    except manifest.ManifestError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "num_layers": _json | st.integers(0, 3),
        "num_heads": _json | st.integers(0, 3),
        "query_len": _json | st.integers(0, 3),
        "key_len": _json | st.integers(0, 3),
        "tokens": _json | st.lists(st.text(max_size=3), max_size=3),
        "key_tokens": _json,
        "has_qk": _json,
        "num_kv_heads": _json | st.integers(0, 3),
        "d_head": _json,
        "segments": _json,
        "patch_grid": _json,
        "image": _json,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_json, _fields))
def test_arbitrary_json_validates_or_raises_manifest_error(fields):
    try:
        decoded = manifest.validate(fields)
    except manifest.ManifestError as e:
        assert str(e)
        return
    assert len(decoded.tokens) == decoded.query_len and decoded.blob_count() >= 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_layers": "2"}, "num_layers must be an integer"),
        ({"num_layers": 2.0}, "num_layers must be an integer"),
        ({"num_layers": True}, "num_layers must be an integer"),
        ({"num_layers": 10**30}, "num_layers must be an integer"),
        ({"num_heads": 0}, "num_heads must be an integer"),
        ({"tokens": ["a"]}, "tokens must be a list of 5 strings"),
        ({"tokens": [1, 2, 3, 4, 5]}, "tokens must be a list of 5 strings"),
        ({"has_qk": 1}, "has_qk must be true or false"),
        ({"has_qk": True, "num_kv_heads": 3, "d_head": 8}, "does not divide"),
        ({"key_len": 6}, "key_tokens is missing"),
        ({"segments": [0, -1, 0, 0, 0]}, "segments must be"),
        ({"image": {"index": 3, "width": 4, "height": 4}}, "image without patch_grid"),
    ],
)
def test_each_wrong_field_is_named(rng, change, message):
    fields = dict(_writer_manifest(rng), **change)
    with pytest.raises(manifest.ManifestError, match=message):
        manifest.decode(manifest.encode(fields))


def test_structure_and_encoding_errors_are_manifest_errors():
    bodies = [b"[1, 2]", b"{not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'{"num_layers": NaN}', b""]
    for body in bodies:
        with pytest.raises(manifest.ManifestError):
            manifest.decode(body)
    with pytest.raises(manifest.ManifestError, match="truncated"):
        manifest.decode(b"TBM1\x00")
    body = b"{}"
    good_crc = manifest.MAGIC + zlib.crc32(body).to_bytes(4, "little") + body
    with pytest.raises(manifest.ManifestError, match="num_layers"):
        manifest.decode(good_crc)  # the checksum holds; the content is still validated
    with pytest.raises(manifest.ManifestError, match="not bytes"):
        manifest.decode(np.zeros(3))
