"""The cbrt8 attention encoding meets its documented error bound and size; containers reject bad bytes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tb_attention.format import codec
from tests.conftest import softmax_attention


def _rows(rng):
    n = 64
    uniform = np.full((1, n), 1 / n)
    one_hot = np.eye(n)[:3]
    tiny = softmax_attention(rng, 1, 1, 4, n, sharpness=12.0)[0, 0]
    zero = np.zeros((1, n))
    return np.concatenate([uniform, one_hot, tiny, zero, softmax_attention(rng, 1, 1, 50, n)[0, 0]]).astype(np.float32)


def test_decoding_stays_within_the_documented_bound(rng):
    w = _rows(rng)
    decoded = codec.decode_attention(codec.attention_container(w[None]))[0]
    bound = codec.cbrt8_error_bound(w)
    assert np.all(np.abs(decoded - w) <= bound)
    # and the bound is meaningful: 0.62 % of the row maximum at most
    assert np.all(bound <= 0.0062 * w.max(-1, keepdims=True) + 1e-12)


def test_uniform_and_one_hot_rows_are_exact_enough(rng):
    w = _rows(rng)[:4]
    decoded = codec.decode_attention(codec.attention_container(w[None]))[0]
    np.testing.assert_allclose(decoded.sum(-1), 1.0, atol=0.02)
    assert decoded[1].argmax() == 0 and decoded[1, 1:].max() == 0


def test_size_is_one_byte_per_weight_plus_one_per_row(rng):
    for k in (16, 32, 128, 512):
        w = softmax_attention(rng, 1, 12, k)[0]
        size = len(codec.attention_container(w))
        assert size <= w.size + w.size // k + 256, k  # codes, row scales, a small header
        if k >= 32:
            assert size / w.size <= 1.1, k


@pytest.mark.parametrize(
    "blob, message",
    [(b"", "not a TBA1"), (b"XXXX\0\0\0\0", "not a TBA1"), (b"TBA1\xff\0\0\0{}", "truncated"), (b"TBAZ123", "corrupt")],
)
def test_malformed_containers_raise_value_error(blob, message):
    with pytest.raises(ValueError, match=message):
        codec.unpack(blob)


def test_container_rejects_arrays_running_past_the_end():
    blob = codec.pack({"x": np.arange(10, dtype=np.float32)})
    with pytest.raises(ValueError, match="past the end"):
        codec.unpack(blob.replace(b'"shape":[10]', b'"shape":[99]'))


def test_damaged_bytes_fail_the_checksum():
    blob = bytearray(codec.pack({"x": np.arange(10, dtype=np.float32)}))
    blob[-5] ^= 0x10
    with pytest.raises(ValueError, match="checksum mismatch"):
        codec.unpack(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch"):
        codec.unpack(bytes(blob[:-8]))


def test_compressed_and_plain_containers_decode_the_same(rng):
    arrays = {"a": np.arange(12, dtype=np.int32).reshape(3, 4), "b": rng.random(5).astype(np.float16)}
    plain = codec.pack(arrays, {"k": 1})
    for blob in (plain, codec.compress(plain)):
        meta, out = codec.unpack(blob)
        assert meta == {"k": 1}
        for name in arrays:
            np.testing.assert_array_equal(out[name], arrays[name])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_value_error(blob):
    for prefix in (b"", codec.MAGIC, codec.MAGIC_ZLIB):
        try:
            codec.decode_attention(prefix + blob)
        except ValueError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["meta", "arrays", "crc32", "x"]),
        st.none()
        | st.integers()
        | st.text()
        | st.lists(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=5), st.integers()),
    )
)
def test_arbitrary_headers_decode_or_raise_value_error(header):
    import json
    import struct

    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    try:
        codec.decode_attention(codec.MAGIC + struct.pack("<I", len(text)) + text + b"\0" * 16)
    except ValueError:
        pass


def test_a_compressed_container_cannot_inflate_without_bound(monkeypatch):
    import zlib

    monkeypatch.setattr(codec, "MAX_CONTAINER_BYTES", 1 << 20)
    bomb = codec.MAGIC_ZLIB + zlib.compress(b"\0" * (4 << 20), 9)  # 4 MiB of zeros in a few KB
    with pytest.raises(ValueError, match="inflates beyond"):
        codec.unpack(bomb)


def test_attention_containers_with_wrong_arrays_are_value_errors():
    bad = [
        codec.pack({"codes": np.zeros((2, 3), np.uint8)}, {"encoding": "cbrt8"}),
        codec.pack(
            {"codes": np.zeros((1, 2, 3), np.float32), "row_exp": np.zeros((1, 2), np.uint8)}, {"encoding": "cbrt8"}
        ),
        codec.pack(
            {"codes": np.zeros((1, 2, 3), np.uint8), "row_exp": np.zeros((1, 3), np.uint8)}, {"encoding": "cbrt8"}
        ),
    ]
    for blob in bad:
        with pytest.raises(ValueError):
            codec.decode_attention(blob)
