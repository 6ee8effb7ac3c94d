"""tb_attention.capture(model, weights=False) on a small Llama-shaped model: the weights are never materialised, only
q/k and check rows; add_capture stores every layer as q/k, checked against those rows; the rebuilt weights, metrics
and verify() agree with a capture that has the weights; consumers that need full weights say so."""

import numpy as np
import pytest
import torch
import transformers as T

import tb_attention
import tb_attention.notebook as tba
from tb_attention import AttentionWriter
from tests.qk_util import rebuild, slot, within_bound, written

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    config = T.LlamaConfig(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA: d_head 16
    )
    model = T.LlamaModel(config).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.q_proj.weight.mul_(20)  # peaked attention, so that a wrong recompute shows
    ids = torch.randint(3, 100, (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :7] = 0  # row 1 left-padded: some check rows are padding
    return model, dict(input_ids=ids, attention_mask=mask)


def _capture(model, inputs, **kwargs):
    with torch.no_grad(), tb_attention.capture(model, **kwargs) as cap:
        model(**inputs)
    return cap


def test_weights_false_logs_q_k_checked_and_rebuilt_like_the_full_capture(tmp_path, llama):
    model, inputs = llama
    cap = _capture(model, inputs, weights=False)
    full = _capture(model, inputs)
    recs = cap.streams["self"]
    assert not cap.has_weights and all(r.weights is None for r in recs)
    assert recs[0].check_weights.shape == (2, 4, 16, 40) and recs[0].shape == (2, 4, 40, 40)
    with AttentionWriter(str(tmp_path / "qk")) as w:
        tags = w.add_capture("p", cap, step=0, tokens=[[f"t{i}" for i in range(40)]] * 2)
    with AttentionWriter(str(tmp_path / "full")) as w:
        w.add_capture("p", full, step=0, tokens=[[f"t{i}" for i in range(40)]] * 2)
    probes, metrics, _ = written(tmp_path / "qk")
    expected = written(tmp_path / "full")[1]
    assert tags == ["p/0", "p/1"]
    for row, tag in enumerate(tags):
        m, blobs = probes[tag]
        assert m.storage == ["qk", "qk"] and m.query_len == (40, 33)[row]
        real = full.probe("self", row).attentions
        for layer in range(2):
            meta, _ = slot(m, blobs, layer)
            # Row 1's first check rows fall on padding: fewer of them are real tokens.
            assert meta["checked_rows"] == (16, 13)[row] and meta["max_error"] <= 0.01
            assert within_bound(rebuild(m, blobs, layer), real[layer])
        for name, values in expected[tag].items():
            np.testing.assert_allclose(metrics[tag][name], values, rtol=0.02, atol=5e-3, err_msg=name)
    assert cap.verify().ok  # verify() computes full weights in both of its runs


def test_a_layer_whose_check_fails_is_refused_naming_it(tmp_path, llama):
    model, inputs = llama
    cap = _capture(model, {k: v[:1] for k, v in inputs.items()}, weights=False, layers=[1])
    cap.streams["self"][0].extras["scaling"] *= 2  # a wrong recompute parameter: the stored q/k rebuild wrong
    with AttentionWriter(str(tmp_path)) as w:
        w.add_capture("p", cap, step=0)
        with pytest.raises(RuntimeError, match=r"'p' layer 1: weights rebuilt .*off by .* no weights to store instead"):
            w.flush()
    assert "p" not in written(tmp_path)[0]


def test_what_needs_full_weights_says_so(tmp_path, llama):
    model, inputs = llama
    cap = _capture(model, {k: v[:1] for k, v in inputs.items()}, weights=False)
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="weights=False and holds no weights, so it can only be stored as q/k"):
            w.add_capture("p", cap, step=0, store="weights")
    with pytest.raises(ValueError, match="weights=False.*no attention weights to show"):
        tba.show(cap)
    assert cap.probe().attentions is None and len(cap.probe().check[0]) == 16
    with pytest.raises(ValueError, match="cannot also drop them"):
        tb_attention.capture(model, weights=False, qk=False)
