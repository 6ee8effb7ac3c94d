"""Writer behaviour: input forms, background writing, bounded memory, SummaryWriter sharing."""

import glob
import threading

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import softmax_attention


def _served(loaded, run, tag, step, layer):
    return codec.decode_attention(loaded.get("attention", run=run, tag=tag, step=step, layer=layer).get_data())


def test_accepts_hf_tuple_list_of_tensors_and_one_array(tmp_path, rng, load):
    attn = softmax_attention(rng, 2, 3, 4)
    hf_tuple = tuple(torch.from_numpy(a).unsqueeze(0) for a in attn)  # [1, heads, q, k] per layer
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("hf", hf_tuple, tokens=list("abcd"), step=0)
        w.add_attention("list", [torch.from_numpy(a).to(torch.bfloat16) for a in attn], tokens=list("abcd"), step=0)
        w.add_attention("array", attn.astype(np.float64), tokens=list("abcd"), step=0)
    loaded = load(tmp_path)
    for tag, tol in (("hf", 0), ("list", 2**-8), ("array", 0)):
        bound = codec.cbrt8_error_bound(attn[1]) + tol
        assert np.all(np.abs(_served(loaded, "r", tag, 0, 1) - attn[1]) <= bound), tag


def test_training_loop_may_reuse_its_buffer_after_add(tmp_path, rng, load):
    buffer = softmax_attention(rng, 1, 2, 6)
    original = buffer.copy()
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("p", buffer, tokens=list("abcdef"), step=1)
        buffer[:] = 0  # overwritten before the background thread wrote the step
    served = _served(load(tmp_path), "r", "p", 1, 0)
    assert np.all(np.abs(served - original[0]) <= codec.cbrt8_error_bound(original[0]))


def test_pending_memory_is_bounded(tmp_path, rng, monkeypatch):
    from tb_attention.write import encode

    gate, peak = threading.Event(), []
    real = encode.probe_events

    def slow_probe_events(job, first):
        gate.wait(10)
        return real(job, first)

    monkeypatch.setattr(encode, "probe_events", slow_probe_events)
    attn = softmax_attention(rng, 2, 2, 16)  # 8 KiB per step
    w = AttentionWriter(str(tmp_path / "r"), max_pending_bytes=20_000)
    done = threading.Event()

    def produce():
        for step in range(6):
            w.add_attention("p", attn, tokens=[str(i) for i in range(16)], step=step)
            peak.append(w._queue._pending_bytes)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert not done.wait(0.5), "add_attention must block while the pending budget is used up"
    gate.set()
    assert done.wait(10)
    w.close()
    assert max(peak) <= 20_000


def test_shares_the_event_file_of_a_torch_summary_writer(tmp_path, rng, load):
    sw = SummaryWriter(str(tmp_path / "run"))
    w = AttentionWriter(sw)
    for step in range(3):
        sw.add_scalar("loss", 1.0 / (step + 1), step)
        w.add_attention("probe", softmax_attention(rng, 1, 2, 3), tokens=list("xyz"), step=step)
    w.close()
    sw.close()
    assert len(glob.glob(str(tmp_path / "run" / "events.out.tfevents.*"))) == 1
    assert load(tmp_path).get("steps", run="run", tag="probe").get_json()["steps"] == [0, 1, 2]


def test_background_failure_surfaces_on_the_next_call(tmp_path, rng, monkeypatch):
    from tb_attention.write import encode

    monkeypatch.setattr(encode, "probe_events", lambda job, first: 1 / 0)
    w = AttentionWriter(str(tmp_path / "r"))
    w.add_attention("p", softmax_attention(rng, 1, 1, 2), tokens=list("ab"), step=0)
    with pytest.raises(RuntimeError, match="could not write a step"):
        w.flush()
    w.close()


def test_rejects_unknown_targets():
    with pytest.raises(TypeError, match="log directory or a torch"):
        AttentionWriter(42)


def test_event_crc_is_fast_and_correct(tmp_path):
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as stub

    AttentionWriter(str(tmp_path)).close()  # installs the C implementation
    data = np.random.default_rng(0).bytes(1000)
    assert stub.crc32c.__module__ != stub.__name__
    assert stub.crc32c(data) == stub.crc_finalize(stub.crc_update(stub.CRC_INIT, data))  # the pure-Python reference
