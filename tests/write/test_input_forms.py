"""The forms attention arrives in from a BertViz-style loop: stacked HF outputs, read-only numpy, a call without a tag."""

import warnings

import numpy as np
import pytest
import torch

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import Loaded, _python_loader, softmax_attention

L, H, T = 2, 3, 5
TOKENS = list("abcde")


def _served(logdir, tag, layer):
    loaded = Loaded(_python_loader(logdir)[0])
    return codec.decode_attention(loaded.get("attention", run=".", tag=tag, step=0, layer=layer).get_data())


def test_stacked_hf_attentions_are_logged_like_the_tuple(tmp_path, rng):
    layers = tuple(torch.from_numpy(a[None]) for a in softmax_attention(rng, L, H, T))  # outputs.attentions
    q = tuple(torch.randn(1, H, T, 4) for _ in range(L))
    with AttentionWriter(str(tmp_path)) as w:
        w.add_attention("tuple", layers, tokens=TOKENS, step=0, queries=q, keys=q)
        w.add_attention("stacked", torch.stack(layers), tokens=TOKENS, step=0, queries=torch.stack(q), keys=q)
    for layer in range(L):
        assert np.array_equal(_served(tmp_path, "stacked", layer), _served(tmp_path, "tuple", layer))


def test_stacked_batch_is_refused_with_the_row_to_take(tmp_path, rng):
    batch = torch.from_numpy(np.stack([softmax_attention(rng, L, H, T)] * 2, axis=1))  # [L, 2, H, Q, K]
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match=r"batch size 2; log one example per tag, e\.g\. attentions\[:, row\]"):
            w.add_attention("probe", batch, tokens=TOKENS, step=0)
        assert w.add_metrics("probe", batch, step=0)  # metrics take a batch


def test_read_only_numpy_is_copied_without_a_warning(tmp_path, rng):
    frozen = softmax_attention(rng, L, H, T)
    frozen.flags.writeable = False  # e.g. np.load(..., mmap_mode="r") or an array shared between processes
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with AttentionWriter(str(tmp_path)) as w:
            w.add_attention("probe", frozen, tokens=TOKENS, step=0, queries=frozen[..., :4], keys=frozen[..., :4])
    assert [str(r.message) for r in record] == []
    served = _served(tmp_path, "probe", 1)
    assert np.all(np.abs(served - frozen[1]) <= codec.cbrt8_error_bound(frozen[1]))


@pytest.mark.parametrize(
    "call",
    [
        lambda w, a: w.add_attention(a, tokens=TOKENS, step=0),
        lambda w, a: w.add_metrics(a, step=0),
        lambda w, a: w.add_attention_batch([a], tokens=[TOKENS], step=0),
        lambda w, a: w.add_capture(object(), step=0),
    ],
    ids=["add_attention", "add_metrics", "add_attention_batch", "add_capture"],
)
def test_a_call_without_the_tag_says_the_tag_comes_first(tmp_path, rng, call):
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(TypeError, match=r"the tag comes first and must be a string, got (ndarray|list|object)"):
            call(w, softmax_attention(rng, L, H, T))


def test_sdpa_outputs_without_weights_point_to_eager_or_capture(tmp_path):
    import transformers as T

    config = T.BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    config._attn_implementation = "sdpa"  # transformers' default for pretrained models
    model = T.BertModel(config).eval()
    with torch.no_grad():
        outputs = model(input_ids=torch.tensor([[1, 2, 3]]), output_attentions=True)
    assert len(outputs.attentions) == 0  # what a BertViz-style call gets under sdpa
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match=r"load the model with attn_implementation='eager', or record it with"):
            w.add_attention("probe", outputs.attentions, tokens=list("abc"), step=0)
