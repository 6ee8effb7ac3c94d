"""neuron_view and show(cap) take what tb_attention.capture records: the q/k the model used, every stream of an
encoder-decoder model, the writer's tags; with the capture's own checks."""

import json

import pytest
import torch
import transformers

import tb_attention
from tb_attention import notebook as tba
from tb_attention.format import codec
from tests.models import minilm_tokenizer
from tests.notebook.util import payload, response


@pytest.fixture(scope="module")
def tokenizer():
    torch.set_num_threads(1)
    return minilm_tokenizer()


def tiny_gpt2(vocab):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return transformers.GPT2LMHeadModel(config)


def test_neuron_view_of_a_causal_model_holds_the_qk_it_used(tokenizer):
    model = tiny_gpt2(len(tokenizer)).train()
    view = tba.neuron_view(model, tokenizer, "the cat sat on the mat", layer=1, head=2)
    assert model.training  # its mode is given back
    header, responses = payload(view.html())
    assert header["options"]["view"] == "neuron" and header["options"]["head"] == 2
    assert "neuron" not in header["options"]["hide"]
    tag = json.loads(response(responses, "runs"))["runs"][0]["probes"][0]
    manifest = json.loads(response(responses, "tokens", run="notebook", tag=tag, step=0))
    assert manifest["has_qk"] and manifest["tokens"][0] == "[CLS]"
    _, arrays = codec.unpack(response(responses, "qk", run="notebook", tag=tag, step=0, layer=1))
    assert arrays["queries"].shape == (4, manifest["query_len"], 8)
    # The recorded weights are the softmax of the recorded q/k: causal, so the first query sees only itself.
    attn = codec.decode_attention(response(responses, "attention", run="notebook", tag=tag, step=0, layer=1))
    assert attn[:, 0, 1:].max() == 0


def test_bertviz_argument_order_works_for_neuron_view(tokenizer):
    model = tiny_gpt2(len(tokenizer))
    view = tba.neuron_view(model, "gpt2", tokenizer, "a b c")
    assert view.view == "neuron"


def test_show_of_an_encoder_decoder_capture_gives_the_three_parts(tokenizer):
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    enc = tokenizer("a small test", return_tensors="pt")
    dec = torch.tensor([[0, 5, 6]])
    with torch.no_grad(), tb_attention.capture(model) as cap:
        model(input_ids=enc["input_ids"], decoder_input_ids=dec)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    view = tba.show(cap, tokens=tokens, decoder_tokens=["<pad>", "x", "y"])
    _, responses = payload(view.html())
    probes = json.loads(response(responses, "runs"))["runs"][0]["probes"]
    assert probes == ["probe/cross", "probe/decoder", "probe/encoder"]
    cross = json.loads(response(responses, "tokens", run="notebook", tag="probe/cross", step=0))
    assert cross["key_tokens"] == tokens and cross["tokens"] == ["<pad>", "x", "y"]


def test_show_refuses_what_is_not_a_capture_or_a_logdir():
    with pytest.raises(TypeError, match="capture result or a logdir"):
        tba.show(42)
