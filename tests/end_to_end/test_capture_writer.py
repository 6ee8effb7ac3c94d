"""End to end: capture from a model, log with AttentionWriter, read back through the plugin."""

import json

import numpy as np
import torch
import transformers as T

import tb_attention.capture as tc
from tb_attention import AttentionWriter
from tb_attention.capture import log_capture
from tb_attention.format import codec


def test_padded_batch_and_cross_attention_round_trip(tmp_path, load):
    torch.manual_seed(0)
    bert = T.BertModel(
        T.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    ).eval()
    t5 = T.T5Model(T.T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)).eval()
    ids = torch.randint(3, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        with tc.capture(bert) as enc:
            bert(input_ids=ids, attention_mask=mask)
        with tc.capture(t5) as seq2seq:
            t5(input_ids=ids[:1], decoder_input_ids=ids[:1, :3])
    with AttentionWriter(str(tmp_path / "run")) as writer:
        log_capture(writer, "bert", enc, step=7, tokens=[list("abcde"), list("fgh")])
        log_capture(writer, "t5", seq2seq, step=7, tokens=list("abcde"), decoder_tokens=list("xyz"))
    loaded = load(tmp_path)
    probes = json.loads(loaded.get("runs").get_data())["runs"][0]["probes"]
    assert sorted(probes) == ["bert/0", "bert/1", "t5/cross", "t5/decoder", "t5/encoder"]

    manifest = json.loads(loaded.get("tokens", run="run", tag="bert/1", step=7).get_data())
    assert manifest["tokens"] == ["f", "g", "h"] and manifest["has_qk"] and manifest["num_layers"] == 2
    served = codec.decode_attention(loaded.get("attention", run="run", tag="bert/1", step=7, layer=1).get_data())
    expected = enc.probe(row=1).attentions[1]
    assert np.all(np.abs(served - expected) <= codec.cbrt8_error_bound(expected))

    cross = json.loads(loaded.get("tokens", run="run", tag="t5/cross", step=7).get_data())
    assert cross["tokens"] == list("xyz") and cross["key_tokens"] == list("abcde")
    assert (cross["query_len"], cross["key_len"]) == (3, 5)


def test_minilm_example_logs_one_probe_per_sentence(tmp_path, load):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import capture_minilm

    report = capture_minilm.main(["--logdir", str(tmp_path / "minilm")])
    assert report.ok and len(report.diffs) == 6
    loaded = load(tmp_path)
    probes = json.loads(loaded.get("runs").get_data())["runs"][0]["probes"]
    assert sorted(probes) == ["minilm/0", "minilm/1", "minilm/2"]
    manifest = json.loads(loaded.get("tokens", run="minilm", tag="minilm/1", step=0).get_data())
    assert manifest["tokens"][0] == "[CLS]" and manifest["tokens"][-1] == "[SEP]" and "[PAD]" not in manifest["tokens"]
    assert manifest["num_layers"] == 6 and manifest["num_heads"] == 12 and manifest["has_qk"]


def test_vit_probe_is_written_with_its_patch_grid(tmp_path, load):
    torch.manual_seed(0)
    model = T.ViTModel(
        T.ViTConfig(
            image_size=8, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
        )
    ).eval()
    with torch.no_grad(), tc.capture(model) as cap:
        model(pixel_values=torch.randn(1, 3, 8, 8))
    with AttentionWriter(str(tmp_path / "run")) as writer:
        assert log_capture(writer, "image", cap, step=1) == ["image"]
    manifest = json.loads(load(tmp_path).get("tokens", run="run", tag="image", step=1).get_data())
    assert manifest["tokens"] == ["[CLS]", "patch(0,0)", "patch(0,1)", "patch(1,0)", "patch(1,1)"]
