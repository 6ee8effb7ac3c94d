"""The capture across the model matrix: exact outputs, eager self-check <= 1e-5, architecture specifics."""

import warnings

import pytest
import torch
import transformers as T

import tb_attention.capture as tc
from tests.models import minilm_dir

V = 100
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _ids(batch=1, length=12, seed=0):
    return torch.randint(3, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def _seq2seq():
    return dict(input_ids=_ids(), decoder_input_ids=_ids(1, 5, seed=1))


def _sharpen(model):
    # Random init gives near-uniform attention; larger queries make masks, softcap and RoPE visible in the weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("q_proj.weight"):
                p.mul_(30)
    return model


MODELS = {
    "bert": lambda: (T.BertModel(T.BertConfig(vocab_size=V, **SMALL)), dict(input_ids=_ids())),
    "roberta": lambda: (T.RobertaModel(T.RobertaConfig(vocab_size=V, **SMALL)), dict(input_ids=_ids())),
    "distilbert": lambda: (
        T.DistilBertModel(T.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=64)),
        dict(input_ids=_ids()),
    ),
    "gpt2": lambda: (
        T.GPT2Model(
            T.GPT2Config(
                vocab_size=V,
                n_embd=32,
                n_layer=2,
                n_head=4,
                scale_attn_by_inverse_layer_idx=True,
                bos_token_id=0,
                eos_token_id=0,
            )
        ),
        dict(input_ids=_ids()),
    ),
    "llama": lambda: (
        _sharpen(T.LlamaModel(T.LlamaConfig(vocab_size=V, **SMALL, num_key_value_heads=2))),
        dict(input_ids=_ids()),
    ),
    "mistral": lambda: (
        T.MistralModel(T.MistralConfig(vocab_size=V, **SMALL, num_key_value_heads=2, sliding_window=4)),
        dict(input_ids=_ids()),
    ),
    "qwen2": lambda: (
        T.Qwen2Model(
            T.Qwen2Config(
                vocab_size=V,
                **SMALL,
                num_key_value_heads=1,
                use_sliding_window=True,
                sliding_window=4,
                layer_types=["full_attention", "sliding_attention"],
            )
        ),
        dict(input_ids=_ids()),
    ),
    "gemma2": lambda: (
        _sharpen(
            T.Gemma2Model(
                T.Gemma2Config(
                    vocab_size=V,
                    **SMALL,
                    num_key_value_heads=2,
                    head_dim=8,
                    sliding_window=4,
                    attn_logit_softcapping=1.0,
                    query_pre_attn_scalar=16,
                )
            )
        ),
        dict(input_ids=_ids()),
    ),
    "t5": lambda: (
        T.T5Model(T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)),
        _seq2seq(),
    ),
    "bart": lambda: (
        T.BartModel(
            T.BartConfig(
                vocab_size=V,
                d_model=32,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
            )
        ),
        _seq2seq(),
    ),
    "vit": lambda: (
        T.ViTModel(T.ViTConfig(image_size=16, patch_size=4, **SMALL)),
        dict(pixel_values=torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))),
    ),
    "transformer_encoder": lambda: (
        torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2, enable_nested_tensor=False
        ),
        dict(src=torch.randn(1, 12, 32, generator=torch.Generator().manual_seed(0))),
    ),
}


def _build(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    return model.eval(), inputs


def _tensors(output):
    if isinstance(output, torch.Tensor):
        return [output]
    return [t for t in output.to_tuple() if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_outputs_identical_and_self_check(name):
    model, inputs = _build(name)
    with torch.no_grad():
        expected = _tensors(model(**inputs))
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        with tc.capture(model) as cap:
            got = _tensors(model(**inputs))
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert getattr(getattr(model, "config", None), "_attn_implementation", None) == impl
    assert cap.method in ("attention_interface", "torch_mha") and cap.has_qk
    report = cap.verify()
    assert report.ok, str(report)
    assert report.max_diff <= 1e-5
    assert len(report.diffs) == sum(len(recs) for recs in cap.streams.values()) >= 2
    for recs in cap.streams.values():
        for r in recs:  # stored in float16 by default (the writer's q/k format; finer than its attention encoding)
            assert r.weights.dtype == r.queries.dtype == torch.float16
            rows = r.weights.float().sum(-1)
            assert torch.allclose(rows, torch.ones_like(rows), atol=2e-3)


def test_gqa_keys_are_not_repeated():
    model, inputs = _build("llama")
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(**inputs)
    r = cap.streams["self"][0]
    assert r.queries.shape == (1, 4, 12, 8) and r.keys.shape == (1, 2, 12, 8)
    assert r.kv_map == [0, 0, 1, 1] and r.kv_heads == [0, 1] and r.regular_gqa()
    # The stored post-RoPE q/k reproduce the weights: query head 3 reads key head 1.
    logits = r.queries[0, 3] @ r.keys[0, 1].T * r.extras["scaling"]
    logits = logits.masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), float("-inf"))
    assert torch.allclose(torch.softmax(logits, -1), r.weights[0, 3], atol=1e-6)


def test_mqa_and_head_subset_keep_only_needed_key_heads():
    model, inputs = _build("qwen2")  # one key head for four query heads
    with torch.no_grad(), tc.capture(model, heads=[1, 3]) as cap:
        model(**inputs)
    r = cap.streams["self"][0]
    assert r.heads == [1, 3] and r.keys.shape[1] == 1 and r.kv_map == [0, 0]


def test_sliding_window_is_applied():
    model, inputs = _build("mistral")
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    w = cap.streams["self"][1].weights[0]
    q, k = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    outside = (k > q) | (k <= q - 4)
    assert w[:, outside].abs().max() == 0 and (w[:, ~outside] > 0).all()
    assert cap.streams["self"][1].extras["sliding_window"] == 4


def test_gemma2_softcap_is_applied():
    # With sharpened queries the cap (1.0) bites, so a capture that dropped it would fail the self-check.
    model, inputs = _build("gemma2")
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(**inputs)
    r = cap.streams["self"][0]
    assert r.extras["softcap"] == 1.0 and r.extras["scaling"] == 16**-0.5
    from tb_attention.capture.masks import split_mask, to_additive
    from tb_attention.capture.weights import attention_probs

    mask = to_additive(*split_mask(None, 12, 12, torch.device("cpu"), True, r.extras["sliding_window"]))
    uncapped = attention_probs(r.queries, r.keys, r.kv_map, r.extras["scaling"], mask)
    capped = attention_probs(r.queries, r.keys, r.kv_map, r.extras["scaling"], mask, softcap=1.0)
    assert torch.allclose(capped, r.weights, atol=1e-6)
    assert (uncapped - r.weights).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["t5", "bart"])
def test_encoder_decoder_streams(name):
    model, inputs = _build(name)
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    assert sorted(cap.streams) == ["cross", "decoder", "encoder"]
    assert cap.streams["encoder"][0].weights.shape == (1, 4, 12, 12)
    assert cap.streams["decoder"][0].weights.shape == (1, 4, 5, 5)
    assert cap.streams["cross"][0].weights.shape == (1, 4, 5, 12)
    assert cap.streams["cross"][0].keys.shape[2] == 12
    # The decoder is causal, the encoder and cross-attention are not.
    assert cap.streams["decoder"][1].weights[0, :, 0, 1:].abs().max() == 0
    assert (cap.streams["cross"][1].weights > 0).all()


def test_t5_position_bias_is_recorded():
    model, inputs = _build("t5")
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    r = cap.streams["encoder"][0]
    assert r.position_bias.shape == (1, 4, 12, 12) and r.extras["scaling"] == 1.0
    assert r.position_bias.float().abs().max() > 0 and torch.allclose(r.recompute(), r.weights.float(), atol=2e-3)


def test_vit_patch_grid_and_image():
    model, inputs = _build("vit")
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    v = cap.vision
    assert v.grid == (4, 4) and v.patch_size == (4, 4) and v.num_special == 1
    assert v.images.shape == (1, 16, 16, 3) and v.images.dtype.name == "uint8"
    assert v.images.min() == 0 and v.images.max() == 255
    labels = v.token_labels()
    assert labels[0] == "[CLS]" and labels[1] == "patch(0,0)" and labels[-1] == "patch(3,3)" and len(labels) == 17


def test_fallback_for_models_outside_the_interface():
    torch.manual_seed(0)
    model = T.DebertaV2Model(T.DebertaV2Config(vocab_size=V, **SMALL)).eval()
    inputs = dict(input_ids=_ids(2, 8), attention_mask=torch.tensor([[1] * 8, [1] * 6 + [0] * 2]))
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        with pytest.warns(UserWarning, match="queries/keys unavailable"), tc.capture(model, layers=[1]) as cap:
            got = model(**inputs).last_hidden_state
    assert torch.equal(expected, got)
    assert cap.method == "output_attentions" and not cap.has_qk
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the self-check does not repeat the warning
        assert cap.verify().ok
    assert [r.layer for r in cap.streams["self"]] == [1]
    probe = cap.probe(row=1)
    assert probe.queries is None and probe.attentions[0].shape == (4, 6, 6)
    assert model.config._attn_implementation == "eager"


def test_real_minilm_weights():
    path = minilm_dir()
    tokenizer = T.AutoTokenizer.from_pretrained(path)
    model = T.AutoModel.from_pretrained(path).eval()
    batch = tokenizer(["The cat sat on the mat.", "Attention is all you need."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        with tc.capture(model) as cap:
            got = model(**batch).last_hidden_state
    assert torch.equal(expected, got)
    report = cap.verify()
    assert report.ok and len(report.diffs) == 6, str(report)
    assert cap.streams["self"][0].weights.shape[:2] == (2, 12)
