"""Rows that do not sum to 1 are logged with one warning per tag naming the worst row; sink rows may be partial."""

import warnings

import numpy as np
import torch
import transformers as T

import tb_attention
from tb_attention import AttentionWriter
from tb_attention.cli import logged_steps
from tests.conftest import softmax_attention

TOKENS = list("abcdef")


def _row_warnings(record):
    return [str(w.message) for w in record if "attention rows of" in str(w.message)]


def _logged(tmp_path, calls):
    """Runs `calls(writer)`, flushes, -> the row-sum warnings it raised (the check runs on the writer's thread)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with AttentionWriter(str(tmp_path)) as w:
            calls(w)
            w.flush()
    return _row_warnings(record)


def test_sigmoid_scores_warn_once_per_tag_with_the_worst_row(tmp_path, rng):
    scores = 1 / (1 + np.exp(-rng.normal(size=(2, 3, 6, 6)))).astype(np.float32)
    sums = scores.sum(-1)
    layer, head, query = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)

    def calls(w):
        for step in range(3):
            w.add_attention("sig", scores, tokens=TOKENS, step=step)
        w.add_attention("other", scores, tokens=TOKENS, step=0)

    messages = sorted(_logged(tmp_path, calls))
    assert len(messages) == 2 and "'other'" in messages[0] and "'sig'" in messages[1]
    assert f"layer {layer}, head {head}, query {query} sums to {sums[layer, head, query]:.4g}" in messages[1]
    assert logged_steps(str(tmp_path), "sig") == {0, 1, 2}  # warned, but logged


def test_transposed_probabilities_warn(tmp_path, rng):
    probs = softmax_attention(rng, 2, 3, 6)
    probs = np.where(np.tril(np.ones((6, 6), bool)), probs, 0)
    probs = probs / probs.sum(-1, keepdims=True)  # causal rows: their columns sum to anything but 1
    messages = _logged(tmp_path, lambda w: w.add_attention("t", probs.transpose(0, 1, 3, 2), tokens=TOKENS, step=0))
    assert len(messages) == 1 and "not transposed" in messages[0]


def test_bfloat16_softmax_of_long_rows_does_not_warn(tmp_path):
    logits = torch.randn(2, 4, 8, 512, generator=torch.Generator().manual_seed(0)) * 4
    probs = logits.to(torch.bfloat16).softmax(-1)
    messages = _logged(
        tmp_path, lambda w: w.add_attention("bf16", probs, tokens=list("abcdefgh"), step=0, key_tokens=["k"] * 512)
    )
    assert messages == []


def test_partial_rows_accept_sums_below_one_but_not_above(tmp_path, rng):
    probs = softmax_attention(rng, 2, 3, 6)

    def calls(w):
        w.add_attention("sink", probs * 0.3, tokens=TOKENS, step=0, partial_rows=True)
        w.add_metrics("sink", probs * 0.3, step=1)  # remembered for the tag
        w.add_attention("over", np.minimum(probs * 3, 1), tokens=TOKENS, step=0, partial_rows=True)
        w.add_metrics("plain", probs * 0.3, step=0)

    messages = sorted(_logged(tmp_path, calls))
    assert len(messages) == 2
    assert "'over' should sum to at most 1 (partial_rows=True)" in messages[0]
    assert "'plain' should sum to 1," in messages[1]


def test_metrics_skip_query_rows_outside_the_mask(tmp_path, rng):
    batch = np.stack([softmax_attention(rng, 2, 3, 6), softmax_attention(rng, 2, 3, 6)], axis=1)  # [L, B, H, Q, K]
    batch[:, 1, :, 4:] = 0  # padding queries of row 1: whatever the model left there
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    masked = _logged(tmp_path / "a", lambda w: w.add_metrics("m", batch, step=0, mask=mask))
    unmasked = _logged(tmp_path / "b", lambda w: w.add_metrics("m", batch, step=0))
    assert masked == [] and len(unmasked) == 1 and "batch row 1" in unmasked[0]


def test_gpt_oss_sink_rows_are_logged_without_a_warning(tmp_path):
    torch.manual_seed(0)
    config = T.GptOssConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=32,
        num_local_experts=2,
        num_experts_per_tok=1,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
    )
    model = T.GptOssForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0, 2)  # trained sinks take a visible share of each row
        with tb_attention.capture(model) as cap:
            model(input_ids=torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0)))
    assert min(float(r.weights.float().sum(-1).min()) for r in cap.streams["self"]) < 0.5
    assert _logged(tmp_path, lambda w: w.add_capture("oss", cap, step=0)) == []
    assert logged_steps(str(tmp_path), "oss") == {0}
