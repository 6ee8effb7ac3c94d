"""The capture's log step stores the model's own layer and head indices and each layer's recompute parameters
(manifest `layers`), so the views neither renumber a subset nor assume 1/sqrt(d) scaling or a mask."""

import glob

import numpy as np
import torch
import transformers as T

import tb_attention
from tb_attention import AttentionWriter
from tb_attention.format import codec, manifest
from tests.models import minilm_dir


def _written(logdir):
    """{tag: (manifest, blobs)} of every probe event written under `logdir`."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = {}
    for path in glob.glob(f"{logdir}/**/events.*", recursive=True):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tensor.string_val:
                    blobs = list(value.tensor.string_val)
                    out[value.tag] = (manifest.decode(blobs[0]), blobs)
    return out


def _recompute(q, k, scaling, info):
    """Softmax of q·k·scaling under the stored mask description, in float64 (what the neuron view computes)."""
    qn, kn = len(q[0]), len(k[0])
    scores = np.einsum("hqd,hkd->hqk", q.astype(np.float64), k.astype(np.float64)) * scaling
    i = np.arange(qn)[:, None] + (info.get("offset") or 0)
    j = np.arange(kn)[None, :]
    allowed = {"none": np.ones((qn, kn), bool), "causal": j <= i}.get(info["mask"])
    if info["mask"] == "sliding":
        allowed = (j <= i) & (j > i - info["window"])
    scores = np.where(allowed, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_a_layer_and_head_subset_of_minilm_keeps_the_models_numbers(tmp_path):
    tok = T.AutoTokenizer.from_pretrained(minilm_dir())
    model = T.AutoModel.from_pretrained(minilm_dir()).eval()
    enc = tok("the cat sat on the mat", return_tensors="pt")
    with tb_attention.capture(model, layers=[0, -1], heads=[0, 3]) as cap:
        model(**enc)
    with AttentionWriter(str(tmp_path)) as w:
        w.add_capture("mini", cap, tokens=tok.convert_ids_to_tokens(enc["input_ids"][0]), step=0)
    m, blobs = _written(tmp_path)["mini"]
    assert (m.num_layers, m.num_heads) == (2, 2)
    assert [entry["index"] for entry in m.layers] == [0, 5]
    assert all(entry["heads"] == [0, 3] and entry["kv_heads"] == [0, 3] for entry in m.layers)
    assert all(entry["mask"] == "none" and entry["bias"] == "none" for entry in m.layers)
    assert m.layers[1]["scaling"] == 32**-0.5  # MiniLM: 384 / 12 heads
    # Stored layer 1 is the model's layer 5, head 1 its head 3.
    stored = codec.decode_attention(blobs[2])
    np.testing.assert_allclose(stored[1], cap.streams["self"][1].weights[0, 1].float().numpy(), atol=0.01)


def test_gpt2_inverse_layer_scaling_is_logged_and_recomputes_the_logged_weights(tmp_path):
    config = T.GPT2Config(
        n_layer=3,
        n_head=4,
        n_embd=64,
        vocab_size=100,
        n_positions=32,
        scale_attn_by_inverse_layer_idx=True,
        initializer_range=0.5,  # peaked attention: the scaling visibly matters
    )
    torch.manual_seed(0)
    model = T.GPT2Model(config).eval()
    ids = torch.randint(0, 100, (1, 12), generator=torch.Generator().manual_seed(1))
    with tb_attention.capture(model) as cap:
        model(ids)
    with AttentionWriter(str(tmp_path)) as w:
        w.add_capture("gpt2", cap, tokens=[str(i) for i in ids[0].tolist()], step=0)
    m, blobs = _written(tmp_path)["gpt2"]
    d = 16
    assert [entry["scaling"] for entry in m.layers] == [d**-0.5 / (layer + 1) for layer in range(3)]
    assert all(entry["mask"] == "causal" and entry["offset"] == 0 for entry in m.layers)
    for layer, info in enumerate(m.layers):
        logged = codec.decode_attention(blobs[1 + layer])
        qk = codec.unpack(blobs[1 + m.num_layers + layer])[1]
        q, k = qk["queries"].astype(np.float32), qk["keys"].astype(np.float32)
        bound = codec.cbrt8_error_bound(logged) + 2e-3  # storage: 8-bit weights, fp16 q/k
        assert np.all(np.abs(_recompute(q, k, info["scaling"], info) - logged) <= bound), layer
        if layer >= 1:  # what the neuron view used to assume: visibly wrong
            assert np.abs(_recompute(q, k, d**-0.5, info) - logged).max() > 0.02, layer


def test_padding_is_removed_from_the_stored_mask_description(tmp_path):
    config = T.MistralConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=3,
    )
    torch.manual_seed(0)
    model = T.MistralModel(config).eval()
    ids = torch.randint(3, 100, (2, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0  # row 1 is left-padded
    with tb_attention.capture(model) as cap:
        model(input_ids=ids, attention_mask=mask)
    with AttentionWriter(str(tmp_path)) as w:
        w.add_capture("m", cap, step=0)
    written = _written(tmp_path)
    for tag, length in (("m/0", 8), ("m/1", 5)):
        m, blobs = written[tag]
        assert m.query_len == length
        info = m.layers[0]
        assert (info["mask"], info["window"], info["offset"]) == ("sliding", 3, 0), tag
        assert info["kv_heads"] == [0, 1]
        logged = codec.decode_attention(blobs[1])
        qk = codec.unpack(blobs[2])[1]
        q = qk["queries"].astype(np.float32)
        k = np.repeat(qk["keys"].astype(np.float32), 2, axis=0)  # GQA: query head h reads key head h // 2
        bound = codec.cbrt8_error_bound(logged) + 2e-3
        assert np.all(np.abs(_recompute(q, k, info["scaling"], info) - logged) <= bound), tag
