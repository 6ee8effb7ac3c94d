"""Capture API behaviour: selection, restoration, padding, training mode, memory, writer bridge."""

import subprocess
import sys

import pytest
import torch
import transformers as T

import tb_attention.capture as tc
from tb_attention.capture import log_capture

V = 100


def _bert(layers=2, dropout=0.0):
    torch.manual_seed(0)
    config = T.BertConfig(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        max_position_embeddings=512,
    )
    return T.BertModel(config).eval()


def _llama(kv_heads=2):
    torch.manual_seed(0)
    config = T.LlamaConfig(
        vocab_size=V,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=kv_heads,
        intermediate_size=64,
    )
    return T.LlamaModel(config).eval()


def _ids(batch, length, seed=0):
    return torch.randint(3, V, (batch, length), generator=torch.Generator().manual_seed(seed))


class FakeWriter:
    """Stands in for AttentionWriter: the bridge may only call add_attention."""

    def __init__(self):
        self.calls = []

    def add_attention(self, tag, attentions, *, tokens, step, queries=None, keys=None, key_tokens=None, **extra):
        self.calls.append(
            dict(
                tag=tag,
                attentions=attentions,
                tokens=tokens,
                step=step,
                queries=queries,
                keys=keys,
                key_tokens=key_tokens,
                **extra,
            )
        )


# -- selection and errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(layers=[2]), ValueError, "layer 2 out of range: the model has 2 layers"),
        (dict(layers=[-3]), ValueError, "layer -3 out of range"),
        (dict(heads=[4]), ValueError, "head 4 out of range: the model has 4 attention heads"),
        (dict(heads=[-1]), ValueError, "head -1 out of range"),
        (dict(heads=[]), ValueError, "heads must not be empty"),
        (dict(layers=[0, 0]), ValueError, "duplicates"),
        (dict(layers="0"), TypeError, "layers must be an int or a list of ints"),
        (dict(heads=[0.5]), TypeError, "heads must be an int or a list of ints"),
        (dict(dtype=torch.int8), TypeError, "dtype must be a floating torch.dtype"),
    ],
)
def test_bad_selection_is_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        tc.capture(_bert(), **kwargs)


def test_not_a_module_is_refused():
    with pytest.raises(TypeError, match="needs a torch.nn.Module"):
        tc.capture(lambda x: x)
    with pytest.raises(ValueError, match="nothing to capture"):
        tc.capture(torch.nn.Linear(2, 2))


def test_selected_layers_and_heads_only():
    model = _bert()
    with torch.no_grad(), tc.capture(model, layers=-1, heads=[2, 0]) as cap:
        model(input_ids=_ids(1, 6))
    (record,) = cap.streams["self"]
    assert record.layer == 1 and record.heads == [2, 0]
    assert record.weights.shape == (1, 2, 6, 6) and record.queries.shape == (1, 2, 6, 8)
    with torch.no_grad(), tc.capture(model) as full:
        model(input_ids=_ids(1, 6))
    assert torch.equal(full.streams["self"][1].weights[:, [2, 0]], record.weights)


def test_config_restored_after_exceptions():
    from transformers.modeling_utils import AttentionInterface

    model = _bert()
    original = AttentionInterface.get_interface
    with pytest.raises(RuntimeError, match="boom"), tc.capture(model):
        # The implementation keeps its name (its `== "sdpa"` branches run as usual); the interface is wrapped.
        assert model.config._attn_implementation == "sdpa" and AttentionInterface.get_interface is not original
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    assert AttentionInterface.get_interface is original and "__getitem__" not in AttentionInterface.__dict__
    with pytest.raises(Exception), tc.capture(model):  # noqa: B017 - whatever the model raises on a bad input
        model(input_ids=_ids(1, 600))
    assert model.config._attn_implementation == "sdpa"
    assert not model._forward_hooks and not model._forward_pre_hooks
    with tc.capture(model):  # and the model can be captured again
        pass


def test_nested_capture_of_one_model_is_refused():
    model = _bert()
    with tc.capture(model), pytest.raises(RuntimeError, match="already inside"), tc.capture(model):
        pass
    assert model.config._attn_implementation == "sdpa"


def test_the_subpackage_is_callable_and_light():
    import tb_attention

    model = _bert()
    with tb_attention.capture(model) as cap:
        model(input_ids=_ids(1, 4))
    assert cap.streams
    # Capturing a plain PyTorch model never imports transformers.
    code = "import sys, tb_attention.capture; assert 'transformers' not in sys.modules, 'transformers imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- padding and batches ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_rows_match_unpadded_single_runs(side):
    model = _bert() if side == "right" else _llama()
    ids = _ids(2, 9)
    lengths = [9, 6]
    mask = torch.zeros(2, 9, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1 if side == "right" else 0
        if side == "left":
            mask[row, 9 - n :] = 1
    with torch.no_grad(), tc.capture(model, dtype=torch.float32) as cap:
        model(input_ids=ids, attention_mask=mask)
    for row, n in enumerate(lengths):
        keep = mask[row].bool()
        with torch.no_grad(), tc.capture(model, dtype=torch.float32) as single:
            model(input_ids=ids[row][keep][None])
        probe, alone = cap.probe(row=row), single.probe()
        assert [a.shape for a in probe.attentions] == [(model.config.num_attention_heads, n, n)] * 2
        for a, b in zip(probe.attentions, alone.attentions, strict=True):
            assert abs(a - b).max() < 1e-5
        kv_heads = getattr(model.config, "num_key_value_heads", model.config.num_attention_heads)
        assert probe.keys[0].shape[:2] == (kv_heads, n)
    assert cap.verify().ok


def test_last_forward_in_the_block_is_kept():
    model = _bert()
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(1, 5))
        model(input_ids=_ids(1, 7))
    assert cap.streams["self"][0].weights.shape[-1] == 7 and len(cap.streams["self"]) == 2


# -- training mode and no_grad ----------------------------------------------------------------------------------------


def test_training_mode_outputs_and_gradients_unchanged():
    model = _bert(dropout=0.3).train()
    ids = _ids(2, 8)

    def run(capturing):
        model.zero_grad()
        torch.manual_seed(1)  # same dropout masks: the capture must not draw random numbers
        if capturing:
            with tc.capture(model) as cap:
                out = model(input_ids=ids).last_hidden_state
        else:
            out, cap = model(input_ids=ids).last_hidden_state, None
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], cap

    out_a, grads_a, _ = run(False)
    out_b, grads_b, cap = run(True)
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))
    assert model.training
    # Recorded weights are the pre-dropout probabilities: rows sum to one.
    sums = cap.streams["self"][0].weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    report = cap.verify()
    assert report.ok and model.training and all(m.training for m in model.modules())


def test_no_grad_training_mode():
    model = _bert(dropout=0.3).train()
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(1, 8))
    assert cap.streams["self"][1].weights.shape == (1, 4, 8, 8) and cap.verify().ok


# -- memory -----------------------------------------------------------------------------------------------------------


def test_twelve_layers_at_512_tokens_keep_only_compact_cpu_copies():
    model = _bert(layers=12).train()
    with tc.capture(model, layers=[0, 11], heads=[1], dtype=torch.float16) as cap:
        out = model(input_ids=_ids(1, 512)).last_hidden_state
    assert out.requires_grad
    stored = [t for recs in cap.streams.values() for r in recs for t in (r.weights, r.queries, r.keys)]
    assert [r.layer for r in cap.streams["self"]] == [0, 11]
    for t in stored:
        assert t.device.type == "cpu" and not t.requires_grad and t.grad_fn is None and t.dtype == torch.float16
        # A compact copy, not a view that would keep the model's full tensor alive.
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    assert stored[0].shape == (1, 1, 512, 512)
    args, kwargs = cap.inputs
    assert kwargs["input_ids"].tensor.device.type == "cpu"


def test_no_tensor_of_the_forward_pass_is_retained(monkeypatch):
    # On a GPU these would be device tensors and graph nodes: the capture must let all of them go.
    import gc
    import weakref

    import tb_attention.capture.hf as hf

    seen, storages = [], set()
    real = hf.HFRecorder.on_call

    def spy(self, original, module, query, key, *rest):
        seen.extend([weakref.ref(query), weakref.ref(key)])
        storages.update(t.untyped_storage().data_ptr() for t in (query, key))
        return real(self, original, module, query, key, *rest)

    monkeypatch.setattr(hf.HFRecorder, "on_call", spy)
    model = _llama().train()
    with tc.capture(model) as cap:
        out = model(input_ids=_ids(1, 16)).last_hidden_state
    out.sum().backward()
    del out
    gc.collect()
    assert len(seen) == 4 and all(ref() is None for ref in seen)
    stored = [t for r in cap.streams["self"] for t in (r.queries, r.keys)]
    assert stored[2].shape == (1, 8, 16, 8)
    assert not storages & {t.untyped_storage().data_ptr() for t in stored}


# -- self-check -------------------------------------------------------------------------------------------------------


def test_verify_detects_a_wrong_capture(monkeypatch):
    import tb_attention.capture.session as session  # where every backend computes its weights

    model = _llama()
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(1, 8))
    real = session.attention_probs
    # A capture that ignored the model's scaling:
    monkeypatch.setattr(session, "attention_probs", lambda q, k, kv_map, _, *a, **kw: real(q, k, kv_map, 1.0, *a, **kw))
    report = cap.verify()
    assert not report.ok and report.max_diff > 1e-3 and "FAILED" in str(report)


def test_verify_needs_a_forward():
    model = _bert()
    with tc.capture(model) as cap:
        pass
    with pytest.raises(ValueError, match="nothing to verify"):
        cap.verify()
    with pytest.raises(ValueError, match="nothing was captured"):
        cap.probe()


# -- writer bridge ----------------------------------------------------------------------------------------------------


def test_log_capture_one_probe_per_row_without_padding():
    model = _bert()
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(2, 5), attention_mask=mask)
    tokens = [list("abcde"), list("fgh")]  # full row, or only the real tokens
    writer = FakeWriter()
    assert log_capture(writer, "probe", cap, step=3, tokens=tokens) == ["probe/0", "probe/1"]
    second = writer.calls[1]
    assert second["tokens"] == ["f", "g", "h"] and second["step"] == 3 and second["key_tokens"] is None
    assert len(second["attentions"]) == 2 and second["attentions"][0].shape == (4, 3, 3)
    assert second["queries"][0].shape == (4, 3, 8) and second["keys"][1].shape == (4, 3, 8)
    with pytest.raises(ValueError, match="2 rows"):
        log_capture(writer, "p", cap, step=1, tokens=[list("abcde")] * 3)
    with pytest.raises(TypeError, match="list of strings"):
        log_capture(writer, "p", cap, step=1, tokens="abcde")


def test_log_capture_encoder_decoder_tags_and_key_tokens():
    torch.manual_seed(0)
    model = T.BartModel(
        T.BartConfig(
            vocab_size=V,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
        )
    ).eval()
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(1, 6), decoder_input_ids=_ids(1, 3))
    writer = FakeWriter()
    tags = log_capture(writer, "mt", cap, step=0, tokens=list("source"), decoder_tokens=list("tgt"))
    assert sorted(tags) == ["mt/cross", "mt/decoder", "mt/encoder"]
    cross = next(c for c in writer.calls if c["tag"] == "mt/cross")
    assert cross["tokens"] == list("tgt") and cross["key_tokens"] == list("source")
    assert cross["attentions"][0].shape == (4, 3, 6) and cross["keys"][0].shape == (4, 6, 8)


def test_log_capture_repeats_keys_for_irregular_head_subsets():
    model = _llama(kv_heads=2)  # query heads 0-3 read key head 0, 4-7 key head 1
    with torch.no_grad(), tc.capture(model, heads=[0, 1, 5]) as cap:
        model(input_ids=_ids(1, 4))
    r = cap.streams["self"][0]
    assert r.kv_map == [0, 0, 1] and not r.regular_gqa()
    writer = FakeWriter()
    log_capture(writer, "p", cap, step=0, tokens=list("abcd"))
    keys = writer.calls[0]["keys"][0]
    assert keys.shape == (3, 4, 8) and (keys[1] == keys[0]).all() and (keys[2] == r.keys[0, 1].numpy()).all()
    with torch.no_grad(), tc.capture(model, heads=[4, 5, 6, 7]) as regular:
        model(input_ids=_ids(1, 4))
    log_capture(writer, "q", regular, step=0, tokens=list("abcd"))
    assert writer.calls[1]["keys"][0].shape == (1, 4, 8)


def test_log_capture_labels_vit_patches():
    torch.manual_seed(0)
    model = T.ViTModel(
        T.ViTConfig(
            image_size=8, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
        )
    ).eval()
    with torch.no_grad(), tc.capture(model) as cap:
        model(pixel_values=torch.randn(1, 3, 8, 8))
    writer = FakeWriter()
    log_capture(writer, "img", cap, step=0)
    assert writer.calls[0]["tokens"] == ["[CLS]", "patch(0,0)", "patch(0,1)", "patch(1,0)", "patch(1,1)"]
    assert writer.calls[0]["patch_grid"] == {"rows": 2, "cols": 2, "patch_size": (4, 4), "num_special": 1}
    assert writer.calls[0]["image"].shape == (8, 8, 3) and writer.calls[0]["image"].dtype.name == "uint8"


def test_log_capture_passes_sentence_pair_segments():
    model = _bert()
    segments = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 0]])
    mask = torch.tensor([[1] * 5, [1] * 4 + [0]])
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(2, 5), attention_mask=mask, token_type_ids=segments)
    writer = FakeWriter()
    log_capture(writer, "pair", cap, step=0)
    assert [c["segments"] for c in writer.calls] == [[0, 0, 0, 1, 1], [0, 0, 1, 1]]
    with torch.no_grad(), tc.capture(model) as single:
        model(input_ids=_ids(1, 5), token_type_ids=torch.zeros(1, 5, dtype=torch.long))
    log_capture(writer, "one", single, step=0)
    assert "segments" not in writer.calls[-1]  # a single sentence needs no A/B filter


def test_flex_attention_is_refused_and_nothing_changes():
    model = _llama()
    model.config._attn_implementation_internal = "flex_attention"
    with pytest.raises(ValueError, match="cannot capture flex_attention"), tc.capture(model):
        pass
    assert model.config._attn_implementation == "flex_attention" and not model._forward_hooks


def test_layer_indices_apply_per_stack_of_different_depth():
    torch.manual_seed(0)
    model = T.BartModel(
        T.BartConfig(
            vocab_size=V,
            d_model=32,
            encoder_layers=1,
            decoder_layers=3,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
        )
    ).eval()
    inputs = dict(input_ids=_ids(1, 6), decoder_input_ids=_ids(1, 3))
    with torch.no_grad(), tc.capture(model, layers=[2]) as cap:
        model(**inputs)
    assert {s: [r.layer for r in recs] for s, recs in cap.streams.items()} == {"decoder": [2], "cross": [2]}
    with torch.no_grad(), tc.capture(model, layers=-1) as last:
        model(**inputs)
    assert {s: [r.layer for r in recs] for s, recs in last.streams.items()} == {
        "encoder": [0],
        "decoder": [2],
        "cross": [2],
    }


def test_single_decoder_stack_is_the_self_stream_and_uses_attention_mask():
    torch.manual_seed(0)
    model = T.OPTModel(
        T.OPTConfig(
            vocab_size=V, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32
        )
    ).eval()
    mask = torch.tensor([[1] * 6, [0] * 2 + [1] * 4])  # OPT pads on the left
    with torch.no_grad(), tc.capture(model) as cap:
        model(input_ids=_ids(2, 6), attention_mask=mask)
    assert list(cap.streams) == ["self"] and cap.streams["self"][0].module_name.startswith("decoder.layers.0")
    assert cap.probe(row=1).attentions[0].shape == (4, 4, 4)
    assert list(cap.probe(row=1).query_positions) == [2, 3, 4, 5]
    assert cap.verify().ok


def test_generate_keeps_the_last_step_and_verify_refuses_the_cache():
    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(
        T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    ).eval()
    with torch.no_grad(), tc.capture(model) as cap:
        model.generate(_ids(1, 5), max_new_tokens=3, do_sample=False)
    assert cap.streams["self"][0].weights.shape == (1, 4, 1, 7)  # one new query over the cached keys
    with pytest.raises(ValueError, match="without a KV cache"):
        cap.verify()


def test_a_transformers_model_inside_a_wrapper():
    class Classifier(torch.nn.Module):  # e.g. a LightningModule holding a pretrained encoder
        def __init__(self):
            super().__init__()
            self.encoder = _bert()
            self.head = torch.nn.Linear(32, 2)

        def forward(self, input_ids, attention_mask=None):
            return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])

    model = Classifier().eval()
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad(), tc.capture(model, heads=[3]) as cap:
        model(_ids(2, 6), mask)
    assert cap.method == "attention_interface" and list(cap.streams) == ["self"]
    assert cap.probe(row=1).attentions[1].shape == (1, 4, 4)
    with pytest.raises(ValueError, match="head 4 out of range"):
        tc.capture(model, heads=[4])
    assert cap.verify().ok


def test_fallback_inside_a_wrapper_requests_attentions_from_the_inner_model():
    torch.manual_seed(0)
    inner = T.DebertaV2Model(
        T.DebertaV2Config(
            vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
        )
    ).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, ids):  # accepts no output_attentions of its own
            return self.inner(input_ids=ids).last_hidden_state

    model = Wrapper()
    with torch.no_grad(), pytest.warns(UserWarning, match="queries/keys unavailable"), tc.capture(model) as cap:
        model(_ids(1, 5))
    assert [r.layer for r in cap.streams["self"]] == [0, 1] and not cap.has_qk
    assert not inner._forward_hooks and not inner._forward_pre_hooks
