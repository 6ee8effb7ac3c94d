"""Whatever the writer cannot write is refused in the call (ValueError/TypeError), and a step that fails on the
background thread never blocks the tag's later steps."""

import numpy as np
import pytest
import torch

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tb_attention.write import encode
from tests.conftest import softmax_attention

TOKENS = list("abcd")


@pytest.fixture
def attn(rng):
    return softmax_attention(rng, 2, 2, 4)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"step": 2**63}, ValueError, "2\\*\\*53"),
        ({"step": 2**53}, ValueError, "2\\*\\*53"),
        ({"step": 1, "walltime": float("nan")}, ValueError, "walltime"),
        ({"step": 1, "walltime": float("inf")}, ValueError, "walltime"),
        ({"step": 1, "walltime": -5.0}, ValueError, "walltime"),
        ({"step": 1, "walltime": "now"}, TypeError, "walltime"),
    ],
)
def test_unwritable_steps_and_wall_times_are_refused_in_the_call(tmp_path, attn, kwargs, error, message):
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(error, match=message):
            w.add_attention("p", attn, tokens=TOKENS, **kwargs)
        with pytest.raises(error, match=message):
            w.add_metrics("p", attn, **kwargs)
        w.add_attention("p", attn, tokens=TOKENS, step=2**53 - 1)  # the tag is not blocked
        w.flush()


def test_a_tag_that_is_not_utf8_is_refused(tmp_path, attn):
    with AttentionWriter(str(tmp_path)) as w:
        for tag in ["p\ud800", "\udfff/x"]:
            with pytest.raises(ValueError, match="UTF-8"):
                w.add_attention(tag, attn, tokens=TOKENS, step=0)
        w.add_attention("p\u00e9", attn, tokens=TOKENS, step=0)
        w.flush()


@pytest.mark.parametrize("layout", ["meta", "sparse_coo", "sparse_csr"])
def test_tensors_without_dense_cpu_values_are_refused_with_a_type_error(tmp_path, attn, layout):
    dense = torch.from_numpy(attn)
    bad = {
        "meta": lambda t: t.to("meta"),
        "sparse_coo": lambda t: t.to_sparse(),
        "sparse_csr": lambda t: [layer.to_sparse_csr() for layer in t],  # batched CSR, one per layer
    }
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(TypeError, match="dense|meta"):
            w.add_attention("p", bad[layout](dense), tokens=TOKENS, step=0)
        with pytest.raises(TypeError, match="dense|meta"):
            w.add_attention("p", dense, tokens=TOKENS, step=0, queries=bad[layout](dense), keys=dense)
        w.add_attention("p", dense, tokens=TOKENS, step=0)


def test_flush_after_close_does_nothing(tmp_path, attn):
    w = AttentionWriter(str(tmp_path))
    w.add_attention("p", attn, tokens=TOKENS, step=0)
    w.close()
    w.flush()
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.add_attention("p", attn, tokens=TOKENS, step=1)


def test_a_failed_background_write_does_not_block_later_steps(tmp_path, attn, rng, monkeypatch, load):
    real = encode.probe_events
    calls = []

    def fail_once(job, first):
        calls.append(job.step)
        if len(calls) == 1:
            raise OSError("disk full")
        return real(job, first)

    monkeypatch.setattr(encode, "probe_events", fail_once)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", attn, tokens=TOKENS, step=5)
        with pytest.raises(RuntimeError, match="disk full"):
            w.flush()
        w.add_attention("p", attn, tokens=TOKENS, step=5)  # the failed step can be logged again
        later = softmax_attention(rng, 2, 2, 4)
        w.add_attention("p", later, tokens=TOKENS, step=6)
        w.flush()
    loaded = load(tmp_path)
    assert loaded.get("steps", run="run", tag="p").get_json()["steps"] == [5, 6]
    layer = codec.decode_attention(loaded.get("attention", run="run", tag="p", step=6, layer=0).get_data())
    np.testing.assert_allclose(layer, later[0], atol=0.02)
