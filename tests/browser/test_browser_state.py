"""Chromium tests of state a reader can trust: no stale summary or side panel after a change, only comparable
references offered, the reference actually used shown, `__tba.select` keeping the step, and deep links (the plugin
page's own hash, and TensorBoard's URL around the plugin iframe) that restore the picture after a reload."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page
from tests.conftest import softmax_attention, start_tensorboard

TOKENS = [f"w{i}" for i in range(10)]
STEPS = [0, 50, 100]
L, H, D = 2, 4, 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    rng = np.random.default_rng(0)
    for run in ("a", "b"):
        with AttentionWriter(str(root / run)) as w:
            for step in STEPS:
                q = rng.normal(size=(L, H, len(TOKENS), D)).astype(np.float32)
                k = rng.normal(size=(L, H, len(TOKENS), D)).astype(np.float32)
                attn = softmax_attention(rng, L, H, len(TOKENS))
                w.add_attention("probe/p", attn, tokens=TOKENS, step=step, queries=q, keys=k)
    with AttentionWriter(str(root / "c")) as w:
        w.add_attention("probe/short", softmax_attention(rng, L, H, 6), tokens=TOKENS[:6], step=0)  # other shape
        # Same shape, other layers of the model: its head 0 of layer 0 is not run a's.
        w.add_attention("probe/other", softmax_attention(rng, L, H, len(TOKENS)), tokens=TOKENS, step=0, layers=[0, 7])
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def _ready(page, **painted):
    sel = "body[data-state=ready]" + "".join(f"[data-painted-{k}='{v}']" for k, v in painted.items())
    page.wait_for_selector(sel, timeout=30_000)


def test_compare_offers_only_comparable_probes_and_diff_names_its_reference(server):
    with plugin_page(server) as (page, errors, _):
        page.wait_for_selector("#compare-select option[data-incompatible]", state="attached")
        page.wait_for_function("document.querySelectorAll('#compare-select option[data-incompatible]').length == 2")
        hidden = page.eval_on_selector_all(
            "#compare-select option[data-incompatible]", "os => os.map(o => [o.textContent, o.hidden, o.disabled])"
        )
        assert sorted(hidden) == [
            ["c / probe/other (same step)", True, True],
            ["c / probe/short (same step)", True, True],
        ]
        visible = page.eval_on_selector_all("#compare-select option:not([hidden])", "os => os.map(o => o.textContent)")
        assert "b / probe/p (same step)" in visible

        open_view(page, "diff")  # at the latest step, "—": the previous step, and it says so
        assert "step 50, the previous logged step" in page.text_content("#diff-reference")
        page.evaluate("__tba.select({step: 0})")
        _ready(page, step=0, view="diff")
        assert "step 50, the NEXT logged step (this is the first)" in page.text_content("#diff-reference")
        assert page.text_content(".tba-summary").startswith("Δ = step 0 − step 50")
        assert errors == []


def test_no_view_keeps_a_summary_it_did_not_write(server):
    with plugin_page(server) as (page, errors, _):
        open_view(page, "diff")
        assert page.text_content(".tba-summary").startswith("Δ = step 100 − step 50")
        next_step = page.eval_on_selector_all(
            "#compare-select option", "os => os.find(o => o.textContent === 'next step').value"
        )
        page.select_option("#compare-select", next_step)  # at the last step there is none: a message, no Δ
        page.wait_for_function(
            "document.querySelector('[data-view-root=diff] .tba-message').textContent.includes('no next logged step')"
        )
        _ready(page, view="diff")
        assert page.text_content(".tba-summary") == ""
        assert errors == []


def test_select_keeps_the_step_asked_for_when_the_probe_changes(server):
    with plugin_page(server) as (page, errors, _):
        assert page.get_attribute("body", "data-painted-step") == "100"
        page.evaluate("__tba.select({probe: {run: 'b', tag: 'probe/p'}, step: 0})")
        _ready(page, step=0)
        assert page.input_value("#probe-select") == page.eval_on_selector_all(
            "#probe-select option", "os => os.find(o => o.textContent === 'b / probe/p').value"
        )
        assert errors == []


def test_a_deep_link_restores_view_probe_step_layer_head_query_and_reference(server):
    link = "#view=neuron&run=b&tag=probe%2Fp&step=50&layer=1&head=2&q=5&cmp=prev"
    with plugin_page(server, hash_=link) as (page, errors, _):
        _ready(page, view="neuron", step=50, layer=1)
        root = "[data-view-root='neuron']"
        assert page.input_value("#neuron-head") == "2"
        assert page.get_attribute(root, "data-query") == "5" and page.get_attribute(root, "data-locked") == "true"
        assert page.get_attribute(root, "data-compare") == "step 0"
        assert "b / probe/p" in page.eval_on_selector("#probe-select", "s => s.selectedOptions[0].textContent")
        page.select_option("#neuron-head", "3")  # the URL follows the view's own selection
        page.wait_for_function("location.hash.includes('head=3')")
        page.reload()
        _ready(page, view="neuron", step=50, layer=1)
        assert page.input_value("#neuron-head") == "3"
        assert page.get_attribute(root, "data-query") == "5"
        assert errors == []


def test_deep_links_of_the_matrix_and_model_views(server):
    with plugin_page(server, hash_="#view=matrix&run=a&tag=probe%2Fp&step=0&head=1&zoom=2,6,3,9") as (page, errors, _):
        _ready(page, view="matrix", step=0)
        assert page.input_value("#matrix-head") == "1"
        assert page.get_attribute(".heatmap", "data-zoom") == "2,6,3,9"
    with plugin_page(server, hash_="#view=model&run=a&tag=probe%2Fp&sel=1:2&special=hide") as (page, errors, _):
        _ready(page, view="model")
        page.wait_for_selector(".mv-detail-title:has-text('Layer 1, Head 2')")
        assert page.input_value("#special-select") == "hide"
        assert errors == []


def test_the_link_lives_in_tensorboards_url_around_the_plugin(server):
    with plugin_page(server) as (page, errors, _):
        page.goto(server + "#attention&p.attention.view=matrix&p.attention.step=50&p.attention.head=3")
        frame = _plugin_frame(page)
        frame.wait_for_selector("body[data-state=ready][data-painted-view='matrix'][data-painted-step='50']")
        assert frame.input_value("#matrix-head") == "3"
        frame.select_option("#matrix-head", "2")
        page.wait_for_function("location.hash.includes('p.attention.head=2')")
        assert page.evaluate("location.hash").startswith("#attention")
        page.reload()
        frame = _plugin_frame(page)
        frame.wait_for_selector("body[data-state=ready][data-painted-view='matrix'][data-painted-step='50']")
        assert frame.input_value("#matrix-head") == "2"


def _plugin_frame(page, timeout_s=60):
    for _ in range(timeout_s * 5):
        for frame in page.frames:
            if "plugin_entry.html?name=attention" in frame.url:
                return frame
        page.wait_for_timeout(200)
    raise AssertionError(f"no attention plugin iframe; frames: {[f.url for f in page.frames]}")


def test_the_qk_side_panel_forgets_the_previous_runs_query(server):
    with plugin_page(server, hash_="#view=embedding&run=a&tag=probe%2Fp&sel=1:2") as (page, errors, _):
        page.wait_for_selector(".emb-view[data-emb-mode='single']")
        page.wait_for_function("window.__tbaEmb.screenOf(3) !== null")
        x, y = page.evaluate("window.__tbaEmb.screenOf(3)")
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        page.wait_for_function("Number(document.querySelector('.emb-view').dataset.embLines) > 0")
        assert "attends to (layer 1, head 2)" in page.text_content(".emb-keys")
        assert page.text_content(".emb-context").startswith("probe/p:")
        page.evaluate("__tba.select({probe: {run: 'b', tag: 'probe/p'}})")
        _ready(page, view="embedding")
        assert page.text_content(".emb-keys") == "" and page.text_content(".emb-context") == ""
        assert page.get_attribute(".emb-view", "data-emb-lines") == "0"
        assert errors == []
