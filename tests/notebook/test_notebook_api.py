"""The notebook calls build what the plugin would serve, take BertViz's arguments, and stay inside the byte cap."""

import json
import re

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention import notebook as tba
from tb_attention.format import codec
from tb_attention.notebook import fragment
from tests.conftest import softmax_attention
from tests.notebook.util import payload, response


def hf_attentions(rng, layers=3, heads=4, n=10):
    """Hugging Face's outputs.attentions: one [1, heads, n, n] array per layer."""
    return [a[None] for a in softmax_attention(rng, layers, heads, n)]


def test_head_view_serves_the_writers_encoding_of_hf_attentions(rng):
    attn = hf_attentions(rng)
    tokens = [f"w{i}" for i in range(10)]
    header, responses = payload(tba.head_view(attn, tokens).html())
    manifest = json.loads(response(responses, "tokens", run="notebook", tag="attention", step=0))
    assert manifest["tokens"] == tokens and manifest["num_layers"] == 3 and manifest["num_heads"] == 4
    for layer in range(3):
        served = response(responses, "attention", run="notebook", tag="attention", step=0, layer=layer)
        assert served == codec.attention_container(attn[layer][0])  # byte for byte what the writer would store
    assert header["options"]["view"] == "head"
    assert "neuron" in header["options"]["hide"]  # no q/k in BertViz's arguments


def test_bertviz_arguments_select_layers_heads_and_sentences(rng):
    attn = hf_attentions(rng, layers=4, heads=4, n=8)
    tokens = ["[CLS]", "Ġthe", "▁cat", "sat</w>", "[SEP]", "it", "slept", "[SEP]"]
    view = tba.model_view(attn, tokens, sentence_b_start=5, include_layers=[1, 3], include_heads=[0, 2])
    _, responses = payload(view.html())
    manifest = json.loads(response(responses, "tokens", run="notebook", tag="attention", step=0))
    assert manifest["tokens"][1:4] == [" the", " cat", "sat"]  # prettify_tokens, as BertViz does
    assert manifest["segments"] == [0] * 5 + [1] * 3
    assert [e["index"] for e in manifest["layers"]] == [1, 3] and manifest["layers"][0]["heads"] == [0, 2]
    served = codec.decode_attention(response(responses, "attention", run="notebook", tag="attention", step=0, layer=1))
    np.testing.assert_allclose(served, attn[3][0][[0, 2]], atol=0.01)
    header, _ = payload(tba.head_view(attn, tokens, layer=2, heads=[1, 3]).html())
    assert header["options"]["layer"] == 2 and header["options"]["heads"] == [1, 3]


def test_bertviz_errors_come_before_any_output(rng):
    attn = hf_attentions(rng, n=6)
    with pytest.raises(ValueError, match="Attention has 6 positions, while number of tokens is 5"):
        tba.head_view(attn, ["a"] * 5)
    with pytest.raises(ValueError, match="not both"):
        tba.head_view(attn, ["a"] * 6, encoder_attention=attn)
    with pytest.raises(ValueError, match="layer 7 out of range"):
        tba.head_view(attn, ["a"] * 6, layer=7)
    bad = [a.copy() for a in attn]
    bad[0][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tba.head_view(bad, ["a"] * 6)


def test_encoder_decoder_attention_becomes_the_three_parts(rng):
    enc = [a[None] for a in softmax_attention(rng, 2, 2, 5)]
    dec = [a[None] for a in softmax_attention(rng, 2, 2, 3)]
    cross = [a[None] for a in softmax_attention(rng, 2, 2, 3, 5)]
    view = tba.head_view(
        encoder_attention=enc,
        decoder_attention=dec,
        cross_attention=cross,
        encoder_tokens=list("abcde"),
        decoder_tokens=list("xyz"),
    )
    _, responses = payload(view.html())
    runs = json.loads(response(responses, "runs"))["runs"]
    assert runs[0]["probes"] == ["attention/cross", "attention/decoder", "attention/encoder"]
    cross_manifest = json.loads(response(responses, "tokens", run="notebook", tag="attention/cross", step=0))
    assert cross_manifest["tokens"] == list("xyz") and cross_manifest["key_tokens"] == list("abcde")


def test_hostile_tokens_stay_inside_the_payload_as_text(rng):
    tokens = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>", "<!--", "&amp;", "\u202eevil"]
    html = tba.head_view(hf_attentions(rng, n=5), tokens).html()
    for t in ("<img", "onerror", "alert(", "<!--", "\u202e"):
        assert t not in html
    # The markup is the fragment's own: one payload, one bundle, one loader; nothing from the call's data.
    assert html.count("<script") == 3 and html.count("</script>") == 3
    _, responses = payload(html)
    assert json.loads(response(responses, "tokens", run="notebook", tag="attention", step=0))["tokens"] == tokens


def test_fragment_fetches_nothing_and_names_no_global():
    html = tba.head_view([np.full((1, 1, 2, 2), 0.5, np.float32)], ["a", "b"]).html()
    loader = html[html.rindex("<script>") :]
    for banned in ("http:", "https:", "//cdn", "require(", "requirejs", " src=", "globalThis", "fetch("):
        assert banned not in loader
    # No global name: the loader is one function expression, and assigns nothing to window (the browser test counts
    # the page's globals before and after).
    assert loader.startswith("<script>(function () {") and not re.search(r"window\.[\w$]+\s*=", loader)
    assert "customElements.define(NAME" in loader and fragment.element_name() in html
    # Everything but the loader is base64 inside inert <script type="application/x-…"> elements.
    assert html.count('type="application/x-tb-attention-') == 2


def test_save_writes_a_standalone_page(tmp_path, rng):
    path = tba.head_view(hf_attentions(rng), [str(i) for i in range(10)]).save(tmp_path / "fig.html")
    page = open(path, encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and fragment.element_name() in page and "</html>" in page


def test_long_probe_keeps_top_keys_under_the_cap_and_says_so(rng):
    n = 2048
    logits = rng.standard_normal((1, 2, n, n), dtype=np.float32) * 4
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    view = tba.head_view(list(w[:, None]), [f"t{i}" for i in range(n)], max_bytes=4 << 20)
    assert view.nbytes <= 4 << 20
    assert any("top" in note and "keys kept" in note for note in view.notes)
    header, responses = payload(view.html())
    assert header["options"]["notes"] == view.notes  # said on screen too
    entry = next(e for e in header["entries"] if e["route"] == "attention")
    assert entry["lod"] == "topk"
    meta, arrays = codec.unpack(response(responses, "attention", run="notebook", tag="attention", step=0, layer=0))
    k = arrays["index"].shape[-1]
    # The kept keys are each row's largest weights, with the codes the writer would have stored for them.
    codes, _ = codec.encode_cbrt8(w[0])
    top = np.sort(codes, axis=-1)[..., -k:]
    np.testing.assert_array_equal(np.sort(arrays["codes"], axis=-1), top)
    assert meta["key_len"] == n


def _log(logdir, steps, rng):
    with AttentionWriter(str(logdir)) as w:
        for s in steps:
            w.add_attention("probe/x", softmax_attention(rng, 2, 2, 6), tokens=list("abcdef"), step=s)


def test_show_logdir_embeds_evenly_spaced_steps_and_always_the_last(tmp_path, rng):
    _log(tmp_path / "run1", range(0, 200, 10), rng)
    view = tba.show(tmp_path, probe="probe/x", max_steps=5)
    header, responses = payload(view.html())
    steps = json.loads(response(responses, "steps", run="run1", tag="probe/x"))["steps"]
    assert len(steps) == 5 and steps[0] == 0 and steps[-1] == 190
    assert any("5 of 20 logged steps" in n for n in header["options"]["notes"])
    assert "evolution" not in header["options"]["hide"]  # metrics were logged with every step
    stats_meta, stats = codec.unpack(response(responses, "head_stats", run="run1", tag="probe/x"))
    assert len(stats["steps"]) == 20 and "entropy" in stats_meta["stats"]
    all_view = tba.show(tmp_path, steps="all")
    _, responses = payload(all_view.html())
    assert len(json.loads(response(responses, "steps", run="run1", tag="probe/x"))["steps"]) == 20
    with pytest.raises(ValueError, match="were not logged"):
        tba.show(tmp_path, steps=[5])
    with pytest.raises(ValueError, match="no probe 'nope'"):
        tba.show(tmp_path, probe="nope")


def test_show_logdir_serves_the_stored_bytes(tmp_path, rng):
    _log(tmp_path, [3], rng)
    from tests.conftest import Loaded, _python_loader

    served = Loaded(_python_loader(tmp_path)[0]).get("attention", run=".", tag="probe/x", step=3, layer=1).get_data()
    _, responses = payload(tba.show(tmp_path).html())
    assert response(responses, "attention", run=".", tag="probe/x", step=3, layer=1) == served


def test_minilm_at_128_tokens_all_72_heads_is_under_2_mb():
    """Issue #16's size target (BertViz's head_view of the same input is 54 MB: shared/reference)."""
    import torch
    import transformers

    from tests.models import minilm_dir, minilm_tokenizer

    torch.set_num_threads(1)
    tokenizer = minilm_tokenizer()
    model = transformers.AutoModel.from_pretrained(minilm_dir(), attn_implementation="eager").eval()
    text = " ".join(
        ["the committee met on tuesday to discuss the budget for the new library and its opening hours"] * 12
    )
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=128)
    assert inputs["input_ids"].shape[1] == 128
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    view = tba.head_view(attentions, tokenizer.convert_ids_to_tokens(inputs["input_ids"][0]))
    assert view.notes == []  # nothing dropped: all 6 layers x 12 heads, every key
    header, responses = payload(view.html())
    assert sum(e["route"] == "attention" for e in header["entries"]) == 6
    assert view.nbytes <= 2_000_000, view.nbytes


def test_a_logdir_over_the_cap_keeps_fewer_steps_and_the_last(tmp_path, rng):
    with AttentionWriter(str(tmp_path)) as w:
        for s in range(8):
            w.add_attention("p", softmax_attention(rng, 2, 2, 256), tokens=[f"t{i}" for i in range(256)], step=s)
    view = tba.show(tmp_path, max_bytes=300_000)
    assert view.nbytes <= 300_000
    header, responses = payload(view.html())
    steps = json.loads(response(responses, "steps", run=".", tag="p"))["steps"]
    assert 1 < len(steps) < 8 and steps[-1] == 7
    assert any(f"{len(steps)} of the 8 chosen steps kept" in n for n in header["options"]["notes"])


def test_a_logdir_of_qk_only_layers_is_refused_with_what_to_do(tmp_path):
    import numpy as np

    from tb_attention import AttentionWriter
    from tb_attention import notebook as tba

    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(1, 2, 8, 4)).astype(np.float32), rng.normal(size=(1, 1, 8, 4)).astype(np.float32)
    spec = [{"index": 0, "scaling": 0.5, "mask": "causal", "offset": 0, "bias": "none"}]
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", None, tokens=list("abcdefgh"), step=0, queries=q, keys=k, layers=spec)
    with pytest.raises(NotImplementedError, match=r"layers \[0\] were stored as queries and keys only.*store='both'"):
        tba.show(str(tmp_path), probe="p")
