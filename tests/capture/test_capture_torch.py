"""Capture from plain PyTorch: nn.MultiheadAttention and the nn.Transformer* layers built on it."""

import pytest
import torch

import tb_attention.capture as tc


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _padding(lengths, total):
    return torch.arange(total)[None] >= torch.tensor(lengths)[:, None]  # True = padding, PyTorch's convention


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_fast_path_with_nested_padding(norm_first, monkeypatch):
    # eval + no_grad + padding: PyTorch runs its fused fast path on nested tensors, never calling the MHA module.
    # The capture must neither miss those calls nor knock the model off the fast path.
    fused = []
    real = torch._transformer_encoder_layer_fwd
    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", lambda *a: fused.append(1) or real(*a))
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=not norm_first).eval()
    x, padding = _rand(2, 7, 32), _padding([7, 4], 7)
    with torch.no_grad():
        expected = model(x, src_key_padding_mask=padding)
        with tc.capture(model) as cap:
            got = model(x, src_key_padding_mask=padding)
    assert torch.equal(expected, got) and len(fused) == 4
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert cap.verify().ok
    probe = cap.probe(row=1)
    assert probe.attentions[0].shape == (4, 4, 4) and list(probe.key_positions) == [0, 1, 2, 3]
    assert probe.queries[0].shape == (4, 4, 8) and probe.keys[0].shape == (4, 4, 8)


def test_projections_match_the_module():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2)  # sequence-first layout
    x = _rand(5, 1, 16)
    with tc.capture(mha, dtype=torch.float32) as cap:
        mha(x, x, x)
    r = cap.streams["self"][0]
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q = (x[:, 0] @ w[:16].T + b[:16]).view(5, 2, 8).transpose(0, 1)
    k = (x[:, 0] @ w[16:32].T + b[16:32]).view(5, 2, 8).transpose(0, 1)
    assert torch.allclose(r.queries[0], q, atol=1e-6) and torch.allclose(r.keys[0], k, atol=1e-6)
    _, weights = mha(x, x, x, average_attn_weights=False)
    assert torch.allclose(r.weights[0], weights[0], atol=1e-6)


def test_cross_attention_with_kdim_and_masks():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, kdim=12, vdim=12, batch_first=True)
    query, memory = _rand(2, 3, 16), _rand(2, 5, 12, seed=1)
    per_head = _rand(8, 3, 5, seed=2)  # float attn_mask, one per (batch, head)
    with tc.capture(mha) as cap:
        out, _ = mha(query, memory, memory, attn_mask=per_head, key_padding_mask=_padding([5, 2], 5))
    assert list(cap.streams) == ["cross"]
    r = cap.streams["cross"][0]
    assert r.weights.shape == (2, 4, 3, 5) and r.keys.shape == (2, 4, 5, 4)
    assert r.weights[1, :, :, 2:].abs().max() == 0
    assert cap.verify().ok


def test_full_transformer_streams_and_causal_decoder():
    torch.manual_seed(0)
    model = torch.nn.Transformer(32, 4, 2, 2, 64, batch_first=True).eval()
    src, tgt = _rand(1, 6, 32), _rand(1, 4, 32, seed=1)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(4)
    with torch.no_grad():
        expected = model(src, tgt, tgt_mask=causal, tgt_is_causal=True)
        with tc.capture(model, layers=[1]) as cap:
            got = model(src, tgt, tgt_mask=causal, tgt_is_causal=True)
    assert torch.equal(expected, got)
    assert sorted(cap.streams) == ["cross", "decoder", "encoder"]
    assert [r.layer for r in cap.streams["cross"]] == [1]
    assert cap.streams["cross"][0].weights.shape == (1, 4, 4, 6)
    assert cap.streams["decoder"][0].weights[0, :, 0, 1:].abs().max() == 0
    report = cap.verify()
    assert report.ok and len(report.diffs) == 3


def test_training_mode_is_unchanged():
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.5), 2).train()
    x = _rand(6, 2, 32)

    def run():
        torch.manual_seed(3)
        return model(x)

    expected = run()
    with tc.capture(model) as cap:
        got = run()
    assert torch.equal(expected, got) and got.requires_grad
    assert cap.verify().ok and model.training


def test_unsupported_mha_options():
    with pytest.raises(ValueError, match="add_bias_kv"):
        tc.capture(torch.nn.MultiheadAttention(8, 2, add_bias_kv=True))


def test_decoder_cross_attention_excludes_padding_on_both_sides():
    torch.manual_seed(0)
    model = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(16, 2, 32, batch_first=True), 1).eval()
    tgt, memory = _rand(2, 4, 16), _rand(2, 5, 16, seed=1)
    with torch.no_grad(), tc.capture(model) as cap:
        model(tgt, memory, tgt_key_padding_mask=_padding([4, 3], 4), memory_key_padding_mask=_padding([5, 2], 5))
    assert sorted(cap.streams) == ["cross", "self"]
    probe = cap.probe("cross", row=1)
    assert probe.attentions[0].shape == (2, 3, 2)
    assert list(probe.query_positions) == [0, 1, 2] and list(probe.key_positions) == [0, 1]
    assert cap.verify().ok
