"""Metrics every step, probes every N steps, on one tag: the writer's bookkeeping and the head_stats route."""

import time

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.analysis import metrics
from tb_attention.format import codec
from tests.conftest import softmax_attention

L, H, T = 2, 3, 7


def _stats(loaded, run, tag):
    resp = loaded.get("head_stats", run=run, tag=tag)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return codec.unpack(resp.get_data())


def test_metrics_every_step_and_probes_every_n_share_a_tag(tmp_path, rng, load):
    tokens = ["<bos>", "a", "b", "c", "a", "b", "c"]
    logged = {}
    with AttentionWriter(str(tmp_path / "run")) as w:
        for step in range(12):
            attn = softmax_attention(rng, L, H, T)
            logged[step] = attn
            # Metrics first at even steps, the probe first at the others: both orders are allowed.
            if step % 2 == 0:
                assert w.add_metrics("probe", attn, step=step, tokens=tokens) is True
            if step % 3 == 0:
                w.add_attention("probe", attn, tokens=tokens, step=step)
            if step % 2 == 1:
                expect = step % 3 != 0  # the probe already logged the metrics of this step
                assert w.add_metrics("probe", attn, step=step, tokens=tokens) is expect
        with pytest.raises(ValueError, match="strictly increase"):
            w.add_metrics("probe", logged[11], step=11)
        with pytest.raises(ValueError, match="strictly increase"):
            w.add_attention("probe", logged[9], tokens=tokens, step=9)
    loaded = load(tmp_path)
    assert loaded.get("steps", run="run", tag="probe").get_json()["steps"] == [0, 3, 6, 9]
    meta, arrays = _stats(loaded, "run", "probe")
    assert arrays["steps"].tolist() == list(range(12))
    assert set(meta["stats"]) == set(metrics.NAMES)
    for name in metrics.NAMES:
        assert arrays[name].shape == (12, L, H) and arrays[name].dtype == np.float32
    for step in range(12):  # metrics of consecutive steps are computed together: each must still be its own
        expected = metrics.compute(logged[step], tokens=tokens)
        for name in metrics.NAMES:
            np.testing.assert_allclose(arrays[name][step], expected[name], rtol=1e-5, err_msg=name)
    # The stored entropy keeps its original meaning (mean over rows of -sum w log w, nats).
    attn = logged[6]
    np.testing.assert_allclose(arrays["entropy"][6], -(attn * np.log(attn)).sum(-1).mean(-1), rtol=1e-5)


def test_batched_metrics_with_padding_and_torch_tensors(tmp_path, rng, load):
    torch = pytest.importorskip("torch")
    attn = softmax_attention(rng, L * 2, H, T).reshape(L, 2, H, T, T)
    mask = np.ones((2, T), bool)
    mask[1, 5:] = False
    hf_style = tuple(torch.from_numpy(attn[layer]) for layer in range(L))  # per layer [batch, heads, q, k]
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_metrics("batch", hf_style, step=0, mask=torch.from_numpy(mask), tokens=np.arange(T))
        buffer = attn.copy()
        w.add_metrics("batch", tuple(torch.from_numpy(buffer[layer]) for layer in range(L)), step=1, mask=mask)
        buffer[:] = 0.5  # the writer copied: later edits by the training loop change nothing
    _, arrays = _stats(load(tmp_path), "run", "batch")
    expected = metrics.compute(attn, query_mask=mask, key_mask=mask)
    for name in ("entropy", "sink_mass", "distance"):
        np.testing.assert_allclose(arrays[name][1], expected[name], rtol=1e-5)
    assert np.isnan(arrays["induction"][1]).all()  # no tokens at step 1


def test_add_metrics_rejects_bad_input_before_writing(tmp_path, rng):
    with AttentionWriter(str(tmp_path)) as w:
        good = softmax_attention(rng, L, H, T)
        with pytest.raises(ValueError, match="reserved"):
            w.add_metrics("p/_entropy", good, step=0)
        with pytest.raises(ValueError, match="mask has shape"):
            w.add_metrics("p", good, step=0, mask=np.ones(T + 1, bool))
        with pytest.raises(ValueError, match="negative"):
            w.add_metrics("p", -good, step=0)
        assert w.add_metrics("p", good, step=0)  # nothing was recorded by the failures


def test_metrics_of_consecutive_steps_are_batched_but_flush_does_not_wait(tmp_path, rng, monkeypatch):
    from tb_attention.write import encode

    calls = []
    real = encode.metric_values
    monkeypatch.setattr(encode, "metric_values", lambda a, o: calls.append(a.shape) or real(a, o))
    attn = softmax_attention(rng, L, H, T)
    with AttentionWriter(str(tmp_path)) as w:
        for step in range(40):
            w.add_metrics("p", attn, step=step)
        w.flush()
        assert sum(shape[1] // H for shape in calls) == 40 and len(calls) < 40  # several steps per pass
        w.add_metrics("p", attn, step=40)
        started = time.perf_counter()
        w.flush()
        assert time.perf_counter() - started < 0.4  # flush ends the wait for more steps
