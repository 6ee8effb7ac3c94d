"""Chromium tests of the numbers a researcher reads off the views: the neuron view's softmax uses the layer's logged
scaling (GPT-2 `scale_attn_by_inverse_layer_idx`), and a logged subset of layers and heads (MiniLM, `layers=[0, -1]`,
`heads=[0, 3]`) keeps the model's numbers in every menu, label, table and export."""

import io

import numpy as np
import pytest
import torch
import transformers as T

import tb_attention
from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page, wait_ready
from tests.conftest import start_tensorboard
from tests.models import minilm_dir

GPT2_D = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("numbers")
    config = T.GPT2Config(
        n_layer=3,
        n_head=4,
        n_embd=4 * GPT2_D,
        vocab_size=100,
        n_positions=32,
        scale_attn_by_inverse_layer_idx=True,
        initializer_range=0.5,  # peaked attention: a wrong scaling is visible
    )
    torch.manual_seed(0)
    gpt2 = T.GPT2Model(config).eval()
    ids = torch.randint(0, 100, (1, 12), generator=torch.Generator().manual_seed(1))
    with tb_attention.capture(gpt2) as cap:
        gpt2(ids)
    with AttentionWriter(str(root / "gpt2")) as w:
        w.add_capture("probe", cap, tokens=[f"t{i}" for i in ids[0].tolist()], step=0)

    tok = T.AutoTokenizer.from_pretrained(minilm_dir())
    mini = T.AutoModel.from_pretrained(minilm_dir()).eval()
    enc = tok("the cat sat on the mat because it was warm", return_tensors="pt")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0])
    with AttentionWriter(str(root / "minilm")) as w:
        for step in (0, 10):
            with torch.no_grad():  # a "training step": move every weight a little
                for p in mini.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(step)) * 0.02 * step)
            with tb_attention.capture(mini, layers=[0, -1], heads=[0, 3]) as cap:
                mini(**enc)
            w.add_capture("probe", cap, tokens=tokens, step=step)
    _by_hand(root / "byhand")
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


BY_HAND = [  # add_attention(..., layers=): what a hand-written model would pass
    {
        "index": 0,
        "heads": [1, 4],
        "scaling": 0.3,
        "softcap": 5.0,
        "mask": "band",
        "offset": 0,
        "window": 2,
        "bias": "none",
    },
    {
        "index": 3,
        "heads": [1, 4],
        "scaling": 0.7,
        "mask": "chunked",
        "offset": 0,
        "chunk": 4,
        "bias": "none",
        "sinks": [0.5, 2.0],
    },
]


def _by_hand(run, T=10, D=8):
    """Weights computed from q/k with each layer's parameters, as the neuron view must recompute them."""
    rng = np.random.default_rng(7)
    q = rng.normal(size=(2, 2, T, D)).astype(np.float32)
    k = rng.normal(size=(2, 2, T, D)).astype(np.float32)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    allowed = [np.abs(i - j) <= 2, (j <= i) & (j // 4 == i // 4)]
    weights = []
    for layer, info in enumerate(BY_HAND):
        s = np.einsum("hqd,hkd->hqk", q[layer].astype(np.float64), k[layer].astype(np.float64)) * info["scaling"]
        if info.get("softcap"):
            s = info["softcap"] * np.tanh(s / info["softcap"])
        s = np.where(allowed[layer], s, -np.inf)
        sinks = np.asarray(info.get("sinks") or [-np.inf, -np.inf])[:, None, None]
        m = np.maximum(s.max(-1, keepdims=True), sinks)
        e = np.exp(s - m)
        weights.append(e / (e.sum(-1, keepdims=True) + np.exp(sinks - m)))
    with AttentionWriter(str(run)) as w:
        tokens = [f"x{t}" for t in range(T)]
        w.add_attention(
            "probe",
            np.stack(weights).astype(np.float32),
            tokens=tokens,
            step=0,
            queries=q,
            keys=k,
            layers=BY_HAND,
            partial_rows=True,
        )


def test_hand_logged_parameters_band_chunked_softcap_and_sinks_recompute(server):
    with plugin_page(server) as (page, errors, _):
        _probe(page, "byhand")
        assert page.locator("#layer-select option").all_text_contents() == ["0", "3"]
        open_view(page, "neuron")
        root = "[data-view-root='neuron']"
        assert page.locator("#neuron-head option").all_text_contents() == ["1", "4"]
        for layer in (0, 1):
            page.select_option("#layer-select", str(layer))
            page.wait_for_selector(f"body[data-painted-layer='{layer}'][data-state=ready]")
            for head in ("0", "1"):
                page.select_option("#neuron-head", head)
                for query in (0, 5, 9):
                    page.click(f".nv-q .token[data-index='{query}']")
                    assert page.get_attribute(root, "data-recompute") == "agrees", (layer, head, query)
                    page.keyboard.press("Escape")
        info = page.text_content(".nv-info")
        assert "chunked causal mask (chunks of 4)" in info and "attention sinks" in info
        assert errors == []


def _probe(page, run):
    options = page.locator("#probe-select option").all_text_contents()
    page.select_option("#probe-select", str(options.index(f"{run} / probe")))
    wait_ready(page)


def test_neuron_softmax_uses_the_logged_per_layer_scaling(server):
    with plugin_page(server) as (page, errors, _):
        _probe(page, "gpt2")
        open_view(page, "neuron")
        root = "[data-view-root='neuron']"
        for layer in range(3):
            page.select_option("#layer-select", str(layer))
            page.wait_for_selector(f"body[data-painted-layer='{layer}'][data-state=ready]")
            for query in (3, 11):
                page.click(f".nv-q .token[data-index='{query}']")  # lock the query
                assert page.get_attribute(root, "data-scaling-from") == "logged"
                scaling = float(page.get_attribute(root, "data-scaling"))
                assert scaling == pytest.approx(GPT2_D**-0.5 / (layer + 1), rel=1e-5)
                assert page.get_attribute(root, "data-recompute") == "agrees", (layer, query)
                assert float(page.get_attribute(root, "data-recompute-diff")) < 0.01
                page.keyboard.press("Escape")
        assert "ASSUMED" not in page.text_content(".nv-info")
        assert "agrees within storage precision" in page.text_content(".nv-verdict")
        assert errors == []


def test_a_logged_subset_keeps_the_models_layer_and_head_numbers(server):
    with plugin_page(server, downloads=True) as (page, errors, _):
        _probe(page, "minilm")
        assert page.locator("#layer-select option").all_text_contents() == ["0", "5"]
        assert [b.get_attribute("data-label") for b in page.locator(".head-toggle").all()] == ["head 0", "head 3"]
        assert "layers 0, 5 of the model" in page.text_content(".tba-summary")
        page.select_option("#layer-select", "1")
        wait_ready(page)
        assert "layer 5" in page.text_content(".tba-summary")

        open_view(page, "model")
        assert page.locator(".mv-row-label").all_text_contents() == ["Layer 0", "Layer 5"]
        assert page.locator(".mv-col-label").all_text_contents() == ["Head 0", "Head 3"]
        page.click(".mv-thumb[data-layer='1'][data-head='1']")
        page.wait_for_selector(".mv-detail-title:has-text('Layer 5, Head 3')")

        open_view(page, "neuron")
        assert page.locator("#neuron-head option").all_text_contents() == ["0", "3"]
        page.select_option("#neuron-head", "1")
        assert page.get_attribute("[data-view-root='neuron']", "data-head-label") == "3"

        open_view(page, "matrix")
        page.select_option("#matrix-head", "1")
        page.wait_for_selector("body[data-state=ready][data-painted-view='matrix']")
        page.wait_for_function("document.querySelector('.tba-summary').textContent.includes('layer 5, head 3')")

        open_view(page, "diff")  # step 10 against step 0
        page.wait_for_selector("#diff-ranking tr[data-layer]")
        rows = page.locator("#diff-ranking tr[data-layer]").all()
        shown = {(r.locator("td").nth(1).text_content(), r.locator("td").nth(2).text_content()) for r in rows}
        assert shown == {("0", "0"), ("0", "3"), ("5", "0"), ("5", "3")}

        open_view(page, "evolution")
        page.wait_for_selector("#evo-rank tbody tr")
        layers = set(page.locator("#evo-rank tbody tr td:nth-child(2)").all_text_contents())
        heads = set(page.locator("#evo-rank tbody tr td:nth-child(3)").all_text_contents())
        assert layers == {"0", "5"} and heads == {"0", "3"}

        with page.expect_download() as info:
            page.click("#export-npz")
        npz = np.load(io.BytesIO(info.value.path().read_bytes()))
        assert npz["layer_index"].tolist() == [0, 5]
        assert npz["head_index"].tolist() == [[0, 3], [0, 3]]
        assert errors == []
