"""7B-class shapes (32 layers x 32 heads x 2,048 tokens): refused whole with advice, logged as a subset in
bounded memory, and served one head at a time."""

import tracemalloc

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import softmax_attention

LAYERS, HEADS, KV_HEADS, TOKENS, D_HEAD = 32, 32, 8, 2048, 128
TOKEN_STRINGS = [f"t{i}" for i in range(TOKENS)]


def test_a_whole_7b_step_is_refused_before_any_copy(tmp_path):
    # A zero-memory view standing in for 4.3 billion weights.
    whole = np.broadcast_to(np.float32(1 / TOKENS), (LAYERS, HEADS, TOKENS, TOKENS))
    with AttentionWriter(str(tmp_path)) as w:
        tracemalloc.start()
        with pytest.raises(ValueError, match=r"4,294,967,296 attention weights \(16.0 GiB.*log a subset"):
            w.add_attention("p", whole, tokens=TOKEN_STRINGS, step=0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 10 << 20


@pytest.fixture(scope="module")
def one_layer_logdir(tmp_path_factory):
    """One layer of a 7B-class model at 2,048 tokens, with GQA q/k: 134 M weights, written in bounded memory."""
    rng = np.random.default_rng(0)
    head = softmax_attention(rng, 1, 1, TOKENS, sharpness=4.0)[0, 0]
    layer = np.broadcast_to(head, (1, HEADS, TOKENS, TOKENS))  # synthetic: every head the same pattern
    q = np.broadcast_to(rng.normal(size=(TOKENS, D_HEAD)).astype(np.float32), (1, HEADS, TOKENS, D_HEAD))
    k = np.broadcast_to(rng.normal(size=(TOKENS, D_HEAD)).astype(np.float32), (1, KV_HEADS, TOKENS, D_HEAD))
    path = tmp_path_factory.mktemp("scale")
    tracemalloc.start()
    with AttentionWriter(str(path / "run"), max_pending_bytes=1 << 30) as w:
        w.add_attention("p", layer, tokens=TOKEN_STRINGS, step=0, queries=q, keys=k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return path, head, peak


def test_writer_memory_is_bounded_by_the_copy_plus_the_encoding(one_layer_logdir):
    _, _, peak = one_layer_logdir
    weights = HEADS * TOKENS * TOKENS
    # The float32 copy the training thread must take (537 MB), the 1-byte codes and the container built from
    # them (134 MB each), zlib's working memory (< 1 byte per weight), plus small per-chunk temporaries.
    assert peak < 4 * weights + 3 * weights + (64 << 20), f"peak {peak / 2**20:.0f} MiB"


def test_backend_serves_one_head_of_a_huge_layer(one_layer_logdir, load):
    path, head, _ = one_layer_logdir
    loaded = load(path)
    manifest = loaded.get("tokens", run="run", tag="p", step=0).get_json()
    assert (manifest["num_heads"], manifest["num_kv_heads"], manifest["query_len"]) == (HEADS, KV_HEADS, TOKENS)
    tracemalloc.start()
    resp = loaded.get("attention", run="run", tag="p", step=0, layer=0, head=31)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert resp.status_code == 200
    decoded = codec.decode_attention(resp.get_data())
    assert decoded.shape == (1, TOKENS, TOKENS)
    assert np.all(np.abs(decoded[0] - head) <= codec.cbrt8_error_bound(head))
    # One layer's 1-byte codes, decompressed (zlib's output buffer may briefly double), never the whole step.
    assert peak < 4 * HEADS * TOKENS * TOKENS
