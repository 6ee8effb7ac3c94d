"""The architecture classes the capture sweep found (issue 14), one behaviour each: towers, composite
encoder-decoders, shared layers, prefix masks, position terms, sinks, spatial reduction, the fallback's second pass,
models without attention."""

import warnings

import pytest
import torch
import transformers as T

import tb_attention.capture as tc
from benchmarks import sweep_build
from tb_attention.capture.fallback import NoAttentionError

from .test_capture_api import FakeWriter

V = 100
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _ids(batch=1, length=7, seed=0):
    return torch.randint(3, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def _pixels(size=32, seed=0):
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _eager_weights(model, inputs):
    from tb_attention.capture.configs import switch_attention

    restore = switch_attention(model, lambda current: "eager")
    try:
        with torch.no_grad():
            return model(**inputs, output_attentions=True)
    finally:
        restore()


def _clip():
    torch.manual_seed(0)
    config = T.CLIPConfig(
        text_config=dict(vocab_size=V, **TEXT, max_position_embeddings=16),
        vision_config=dict(**TEXT, image_size=32, patch_size=8),
        projection_dim=16,
    )
    return T.CLIPModel(config).eval()


def test_each_tower_is_its_own_stream_with_its_own_tokens():
    model = _clip()
    inputs = dict(input_ids=_ids(), pixel_values=_pixels())
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(**inputs)
    assert sorted(cap.streams) == ["text", "vision"]
    assert cap.streams["text"][0].weights.shape == (1, 4, 7, 7)
    assert cap.streams["vision"][0].weights.shape == (1, 4, 17, 17)  # CLS + a 4 x 4 patch grid
    eager = _eager_weights(model, inputs)
    for stream, out in (("text", eager.text_model_output), ("vision", eager.vision_model_output)):
        for r, e in zip(cap.streams[stream], out.attentions, strict=True):
            assert (r.weights - e).abs().max() < 1e-5
    assert list(cap.visions) == ["vision"] and cap.visions["vision"].grid == (4, 4)
    writer = FakeWriter()
    tags = tc.log_capture(writer, "probe", cap, step=0, tokens=list("abcdefg"))
    assert sorted(tags) == ["probe/text", "probe/vision"]  # in the order the towers ran
    text, vision = (next(c for c in writer.calls if c["tag"] == t) for t in ("probe/text", "probe/vision"))
    assert text["tokens"] == list("abcdefg") and "patch_grid" not in text
    assert vision["tokens"][:2] == ["[CLS]", "patch(0,0)"] and vision["patch_grid"]["rows"] == 4
    assert vision["image"].shape == (32, 32, 3)


def test_composite_encoder_decoder_keeps_the_encoder_stream():
    torch.manual_seed(0)
    encoder = T.BertConfig(vocab_size=V, **TEXT)
    decoder = T.BertConfig(vocab_size=V, **TEXT, is_decoder=True, add_cross_attention=True)
    model = T.EncoderDecoderModel(T.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)).eval()
    inputs = dict(input_ids=_ids(), decoder_input_ids=_ids(1, 4, seed=1))
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    assert sorted(cap.streams) == ["cross", "decoder", "encoder"]
    assert cap.streams["encoder"][0].weights.shape == (1, 4, 7, 7)
    assert cap.streams["cross"][0].weights.shape == (1, 4, 4, 7)
    assert cap.verify().ok


def _albert(layers=3):
    torch.manual_seed(0)
    config = T.AlbertConfig(vocab_size=V, embedding_size=16, **{**TEXT, "num_hidden_layers": layers})
    return T.AlbertModel(config).eval()


def test_a_shared_layer_gives_one_layer_per_call():
    model = _albert()  # one attention module, called three times
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(input_ids=_ids())
    recs = cap.streams["self"]
    assert [r.layer for r in recs] == [0, 1, 2] and len({r.module_name for r in recs}) == 1
    eager = _eager_weights(model, dict(input_ids=_ids()))
    for r, e in zip(recs, eager.attentions, strict=True):
        assert (r.weights - e).abs().max() < 1e-5
    assert (recs[0].weights - recs[2].weights).abs().max() > 1e-3  # different calls, not one call three times
    with torch.no_grad(), tc.capture(model, layers=[0, -1]) as ends:
        model(input_ids=_ids())
    assert [r.layer for r in ends.streams["self"]] == [0, 2]
    tc.capture(model, layers=[2])  # the configured depth bounds the indices, not the single module


def test_prefix_lm_mask_is_recorded_and_reproduced_from_qk():
    model, inputs, _ = sweep_build.build("paligemma")  # image + prompt bidirectional, then causal
    assert "token_type_ids" in inputs
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(**inputs)
    r = cap.streams["text"][0]
    prefix = int((inputs["token_type_ids"][0] == 0).sum())
    assert r.mask_kind == "prefix" and r.mask_params["prefix"] == [prefix]
    assert r.weights[0, :, 0, prefix - 1].min() > 0 and r.weights[0, :, prefix, prefix + 1 :].abs().max() == 0
    assert (r.recompute() - r.weights).abs().max() < 1e-5
    eager = _eager_weights(model, inputs).attentions[0]
    assert (r.weights - eager).abs().max() < 1e-5


def test_relative_position_terms_are_kept_apart_from_the_mask():
    model, inputs, _ = sweep_build.build("parakeet_encoder")
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(**inputs)
    r = cap.streams["self"][0]
    assert r.mask_kind == "none" and r.position_bias is not None and r.position_bias.abs().max() > 1e-3
    assert (r.recompute() - r.weights).abs().max() < 1e-5
    without = r.position_bias
    r.position_bias = None  # q/k alone do not reproduce the weights: the stored term is needed
    assert (r.recompute() - r.weights).abs().max() > 1e-3
    r.position_bias = without


@pytest.mark.parametrize("name, in_softmax", [("gpt_oss", True), ("granite_swa", False)])
def test_sinks_follow_the_models_own_convention(name, in_softmax):
    model, inputs, _ = sweep_build.build(name)
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(**inputs)
    eager = _eager_weights(model, inputs).attentions
    for r, e in zip(cap.streams["self"], eager, strict=True):
        assert (r.weights - e).abs().max() < 1e-5
        assert (r.extras["sinks"] is not None) == in_softmax and (r.extras["output_sinks"] is None) == in_softmax
        rows = r.weights.sum(-1)
        assert bool((rows < 1 - 1e-3).any()) == in_softmax
        assert (r.recompute() - r.weights).abs().max() < 1e-5


def test_spatial_reduction_keys_come_from_a_smaller_grid():
    model, inputs, _ = sweep_build.build("segformer")
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    shapes = [tuple(r.weights.shape[2:]) for r in cap.streams["self"]]
    assert shapes[0][1] < shapes[0][0]  # fewer keys than queries: the keys' grid is reduced
    writer = FakeWriter()
    tags = tc.log_capture(writer, "seg", cap, step=0)
    assert len(tags) == len(set(shapes)) and all(t.startswith("seg/stage") for t in tags)
    for call in writer.calls:
        assert len({a.shape for a in call["attentions"]}) == 1


def test_fallback_runs_a_second_eager_pass_and_leaves_outputs_and_rng_alone():
    model, inputs, _ = sweep_build.build("got_ocr2")
    from tb_attention.capture.configs import all_configs

    implementations = [c._attn_implementation_internal for c in all_configs(model)]
    assert "sdpa" in implementations  # the tower the old fallback switched to eager, changing the outputs
    model.train()  # dropout on: the user's random stream must not be consumed by the capture's own pass
    torch.manual_seed(1)
    expected = model(**inputs)
    after_expected = torch.rand(3)
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="second, eager"), tc.capture(model) as cap:
        got = model(**inputs)
    after_got = torch.rand(3)
    assert torch.equal(expected.last_hidden_state, got.last_hidden_state) and torch.equal(after_expected, after_got)
    assert cap.method == "output_attentions" and not cap.has_qk and cap.streams
    assert model.training and [c._attn_implementation_internal for c in all_configs(model)] == implementations


def test_a_model_mixing_interface_and_other_attention_is_filled_in():
    model, inputs, _ = sweep_build.build("bigbird_pegasus")
    with torch.no_grad(), tc.capture(model) as cap:
        model(**inputs)
    assert sorted(cap.streams) == ["cross", "decoder", "encoder"]
    assert not cap.streams["encoder"][0].has_qk and cap.streams["decoder"][0].has_qk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cap.verify().ok


def test_models_without_attention_get_a_clear_error():
    model, inputs, _ = sweep_build.build("rwkv")  # its "attentions" output holds no [batch, heads, q, k] weights
    with pytest.raises(NoAttentionError, match="RwkvModel has no attention to capture"), tc.capture(model):
        model(**inputs)
    assert not model._forward_hooks and not model._forward_pre_hooks
    mamba = T.MambaModel(T.MambaConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, state_size=4))
    with pytest.raises(NoAttentionError, match="no attention module"):
        tc.capture(mamba)
