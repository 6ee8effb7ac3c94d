"""Metrics of a head streamed in row blocks (head_metrics.py, for q/k-only layers) equal metrics.compute on the whole
head, for causal and bidirectional probes, with tokens (induction) and patch coordinates."""

import numpy as np
import pytest

from tb_attention.analysis import metrics
from tb_attention.analysis.head_metrics import HeadMetrics


def _weights(rng, heads, q, k, causal):
    logits = rng.normal(size=(heads, q, k)) * 2.0
    if causal:
        logits = np.where(np.tril(np.ones((q, k), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block", [1, 4, 7, 100])
def test_row_blocks_give_the_metrics_of_the_whole_head(causal, block):
    rng = np.random.default_rng(0)
    heads, q = 3, 13
    w = _weights(rng, heads, q, q, causal)
    tokens = rng.integers(0, 4, q)  # repeated tokens: induction targets exist
    expected = metrics.compute(w[None], tokens=tokens, causal=causal)
    acc = HeadMetrics(heads, q, q, causal=causal, tokens=tokens)
    for h in range(heads):
        for start in range(0, q, block):
            acc.add(h, start, w[h, start : start + block])
    got = acc.values()
    assert set(got) == set(metrics.NAMES)
    for name in metrics.NAMES:
        np.testing.assert_allclose(got[name], expected[name][0], rtol=1e-5, atol=1e-6, err_msg=name)


def test_cross_attention_and_patch_coordinates():
    rng = np.random.default_rng(1)
    w = _weights(rng, 2, 5, 9, causal=False)
    expected = metrics.compute(w[None], causal=False)
    acc = HeadMetrics(2, 5, 9)
    for h in range(2):
        acc.add(h, 0, w[h, :2])
        acc.add(h, 2, w[h, 2:])
    got = acc.values()
    for name in metrics.NAMES:  # prev_token, diagonal and induction are NaN (not self-attention) on both sides
        np.testing.assert_allclose(got[name], expected[name][0], rtol=1e-5, atol=1e-6, err_msg=name)
    coords = metrics.patch_coords(10, (3, 3))  # CLS + a 3 x 3 grid
    w = _weights(rng, 1, 10, 10, causal=False)
    expected = metrics.compute(w[None], query_coords=coords, key_coords=coords)
    acc = HeadMetrics(1, 10, 10, query_coords=coords, key_coords=coords)
    acc.add(0, 0, w[0, :6])
    acc.add(0, 6, w[0, 6:])
    np.testing.assert_allclose(acc.values()["distance"], expected["distance"][0], rtol=1e-5)
