"""add_capture(..., store="qk"): every mask and position term the capture records rebuilds, from the stored fp16 q/k
and the recompute container read back from the event file, the model's own weights within the recompute bound."""

import warnings

import pytest
import torch
import transformers as T

import tb_attention
from tb_attention import AttentionWriter
from tests.qk_util import rebuild, slot, within_bound, written

torch.set_num_threads(1)
V = 100
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _ids(batch=1, length=12, seed=0):
    return torch.randint(3, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def _sharpen(model, factor=20.0):
    # Random init gives near-uniform attention; larger queries make masks, softcap and RoPE visible in the weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "c_attn.weight", ".q.weight")):
                p.mul_(factor)
    return model


def _gpt2():
    config = T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, scale_attn_by_inverse_layer_idx=True)
    return T.GPT2Model(config), dict(input_ids=_ids())


def _llama_padded():  # GQA 4/2, a batch whose second row is left-padded
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :4] = 0
    model = T.LlamaModel(T.LlamaConfig(vocab_size=V, **SMALL, num_key_value_heads=2))
    return model, dict(input_ids=_ids(2), attention_mask=mask)


def _mistral():
    return T.MistralModel(T.MistralConfig(vocab_size=V, **SMALL, num_key_value_heads=2, sliding_window=4)), dict(
        input_ids=_ids()
    )


def _gemma2():  # softcap, query_pre_attn_scalar, sliding and full layers
    config = T.Gemma2Config(
        vocab_size=V,
        **SMALL,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=4,
        attn_logit_softcapping=1.0,
        query_pre_attn_scalar=16,
    )
    return T.Gemma2Model(config), dict(input_ids=_ids())


def _gpt_oss():
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
    model = T.GptOssModel(config)
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.sinks.normal_(0, 2)  # trained sinks take a visible share of each row
    return model, dict(input_ids=torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(0)))


def _t5_encoder():  # relative position buckets: a Toeplitz table per head
    config = T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    return T.T5EncoderModel(config), dict(input_ids=_ids())


def _alibi_mha():
    """ALiBi as nn.MultiheadAttention's per-head float mask (BLOOM's own layers run outside AttentionInterface and
    give no q/k: see the fallback test below)."""
    heads, length = 4, 10
    layer = torch.nn.TransformerEncoderLayer(32, heads, 64, batch_first=True, dropout=0.0)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    slopes = 2.0 ** (-8.0 * torch.arange(1, heads + 1) / heads)
    j, i = torch.arange(length)[None, :], torch.arange(length)[:, None]
    alibi = slopes[:, None, None] * (j - i)[None].float()
    mask = alibi.masked_fill(j > i, float("-inf"))  # causal, with the ALiBi slope per head
    x = torch.randn(1, length, 32, generator=torch.Generator().manual_seed(0)) * 3
    return model, dict(src=x, mask=mask)


MODELS = {
    "causal_gpt2": (_gpt2, "causal", "none"),
    "padding_gqa_llama": (_llama_padded, "causal", "none"),
    "sliding_mistral": (_mistral, "sliding", "none"),
    "softcap_gemma2": (_gemma2, None, "none"),
    "sinks_gpt_oss": (_gpt_oss, None, "none"),
    "t5_bias": (_t5_encoder, "none", "relative"),
    "alibi": (_alibi_mha, "causal", "relative"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_store_qk_rebuilds_the_models_weights(tmp_path, name):
    build, mask, bias = MODELS[name]
    torch.manual_seed(0)
    model, inputs = build()
    model = _sharpen(model).eval()
    with torch.no_grad(), tb_attention.capture(model) as cap:
        model(**inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layer falls back to weights
        with AttentionWriter(str(tmp_path)) as w:
            tags = w.add_capture("p", cap, step=0, store="qk")
    probes = written(tmp_path)[0]
    stream = next(iter(cap.streams))
    for row, tag in enumerate(tags):
        m, blobs = probes[tag]
        assert m.storage == ["qk"] * m.num_layers, tag
        real = cap.probe(stream, row).attentions
        for layer in range(m.num_layers):
            entry = m.layers[layer]
            assert entry["bias"] == bias and (mask is None or entry["mask"] == mask), entry
            meta, _ = slot(m, blobs, layer)
            assert meta["checked_rows"] == min(16, m.query_len) and meta["max_error"] <= 0.01
            assert within_bound(rebuild(m, blobs, layer), real[layer]), (tag, layer)
    if name == "softcap_gemma2":
        assert [e["mask"] for e in m.layers] == ["sliding", "causal"] and m.layers[0]["softcap"] == 1.0
    if name == "sinks_gpt_oss":
        assert all(e["sinks"] is not None for e in m.layers)
    if name == "padding_gqa_llama":
        assert (probes["p/1"][0].query_len, probes["p/1"][0].num_kv_heads) == (8, 2)


def test_a_position_term_that_is_not_relative_keeps_its_weights_with_a_warning(tmp_path):
    torch.manual_seed(0)
    model, inputs = _alibi_mha()
    inputs["mask"] = inputs["mask"] + torch.randn(10, 10, generator=torch.Generator().manual_seed(1))  # arbitrary
    model.layers, model.num_layers = model.layers[:1], 1  # PyTorch's own second layer turns this input into NaN
    with torch.no_grad(), tb_attention.capture(model.eval()) as cap:
        model(**inputs)
    with pytest.warns(UserWarning, match=r"'p' layer 0: cannot store only q/k .*'additive'.*stored as weights"):
        with AttentionWriter(str(tmp_path)) as w:
            w.add_capture("p", cap, step=0, store="qk")
    m, _ = written(tmp_path)[0]["p"]
    assert m.storage is None and [e["bias"] for e in m.layers] == ["additive"]


def test_bloom_alibi_has_no_q_k_so_store_qk_keeps_the_weights(tmp_path):
    model = T.BloomModel(T.BloomConfig(vocab_size=V, hidden_size=32, n_layer=1, n_head=4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback's own warning
        with torch.no_grad(), tb_attention.capture(model) as cap:
            model(input_ids=_ids(length=6))
    with pytest.warns(UserWarning, match="'p': no queries/keys were captured .* stored as weights"):
        with AttentionWriter(str(tmp_path)) as w:
            w.add_capture("p", cap, step=0, store="qk")
    m, _ = written(tmp_path)[0]["p"]
    assert m.storage is None and not m.has_qk
