"""Chromium tests of the model, neuron, matrix and diff views and the head view's lock/top-k extras.

One TensorBoard process and one browser for the module (the machine is small); every test opens its own page.
"""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page, signature, wait_ready
from tests.conftest import softmax_attention, start_tensorboard

XSS = "<img src=x onerror=alert(1)>"
TOKENS = ["[CLS]", "the", "cat", XSS, "sat", "on", "the", "mat", ".", "it", "was", "warm", "and", "soft", "!", "[SEP]"]
STEPS = [0, 50, 100]
L, H, HKV, D = 2, 4, 2, 8
LONG = 2048


def _pattern(rng, step_index, T):
    base = softmax_attention(rng, L, H, T, sharpness=1.0) * 0.2
    target = [np.arange(T), np.maximum(np.arange(T) - 1, 0), np.zeros(T, dtype=int)][step_index]
    for layer in range(L):
        for head in range(H):
            base[layer, head, np.arange(T), (target + layer + head) % T] += 0.8
    return base / base.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(0)
    T = len(TOKENS)
    for run in ("exp1", "exp2", "exp3"):
        with AttentionWriter(str(root / run)) as w:
            if run == "exp3":  # sorts last: exp1 / probe/p is the default probe
                w.add_attention("probe/noqk", _pattern(rng, 0, T), tokens=TOKENS, step=0)
                continue
            for i, step in enumerate(STEPS):
                q = rng.normal(size=(L, H, T, D)).astype(np.float32)
                k = rng.normal(size=(L, HKV, T, D)).astype(np.float32)
                w.add_attention("probe/p", _pattern(rng, i, T), tokens=TOKENS, step=step, queries=q, keys=k)
    with AttentionWriter(str(root / "long")) as w:  # 2,048 tokens: the matrix view's case
        n = LONG
        w.add_attention(
            "probe/long", softmax_attention(rng, 1, 2, n, sharpness=4.0), tokens=[f"w{i}" for i in range(n)], step=0
        )
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def _no_xss(page, dialogs, errors):
    assert page.locator("img").count() == 0
    assert dialogs == []
    assert errors == []


def test_head_view_click_lock_escape_and_top_k(server):
    with plugin_page(server) as (page, errors, dialogs):
        full = signature(page, "#head-canvas")
        page.click(".token.left[data-index='4']")
        locked = signature(page, "#head-canvas")
        assert locked["hash"] != full["hash"]
        assert page.locator(".token.left[data-index='4'].locked").count() == 1
        page.hover(".token.left[data-index='9']")  # hover does not move a lock
        assert signature(page, "#head-canvas")["hash"] == locked["hash"]
        page.mouse.move(2, 2)
        assert signature(page, "#head-canvas")["hash"] == locked["hash"]
        page.keyboard.press("Escape")
        assert signature(page, "#head-canvas")["hash"] == full["hash"]
        # Top-1 lines per query draw fewer pixels than all lines.
        page.select_option("#lines-select", "1")
        wait_ready(page, "head")
        top1 = signature(page, "#head-canvas")
        assert 0 < top1["painted"] < full["painted"]
        _no_xss(page, dialogs, errors)


def test_model_view_grid_enlarge_and_keep_selection(server):
    with plugin_page(server) as (page, errors, dialogs):
        open_view(page, "model")
        assert page.locator(".mv-thumb").count() == L * H
        assert page.locator(".mv-row-label").all_text_contents() == [f"Layer {i}" for i in range(L)]
        assert page.locator(".mv-col-label").all_text_contents() == [f"Head {i}" for i in range(H)]
        for layer in range(L):
            for head in range(H):
                sel = f".mv-thumb[data-layer='{layer}'][data-head='{head}'] canvas"
                assert signature(page, sel)["painted"] > 50, (layer, head)
        grid = signature(page, ".mv-thumb canvas")
        page.click(".mv-thumb[data-layer='1'][data-head='2']")
        page.wait_for_selector(".mv-detail-title:has-text('Layer 1, Head 2')")
        assert page.locator(".mv-detail .token.left").count() == len(TOKENS)
        detail = signature(page, "#model-detail-canvas")
        assert detail["painted"] > 200
        # A step change repaints the grid and keeps the enlarged head.
        page.keyboard.press("[")
        page.wait_for_selector(f"body[data-painted-step='{STEPS[1]}'][data-state=ready]")
        assert signature(page, ".mv-thumb canvas")["hash"] != grid["hash"]
        assert page.locator(".mv-thumb.selected[data-layer='1'][data-head='2']").count() == 1
        assert signature(page, "#model-detail-canvas")["hash"] != detail["hash"]
        # "Open in head view" goes to the head view at that layer.
        page.click(".mv-open-head")
        page.wait_for_selector("body[data-painted-view='head'][data-painted-layer='1'][data-state=ready]")
        _no_xss(page, dialogs, errors)


def test_neuron_view_query_head_and_gqa(server):
    with plugin_page(server) as (page, errors, dialogs):
        open_view(page, "neuron")
        assert "GQA" in page.text_content(".nv-info") and "post-RoPE" in page.text_content(".nv-info")
        assert "1/√8" in page.text_content(".nv-info")
        first = signature(page, ".nv-body canvas")
        assert first["painted"] > 1000
        page.hover(".nv-q .token[data-index='5']")
        assert page.get_attribute("[data-view-root='neuron']", "data-query") == "5"
        hovered = signature(page, ".nv-body canvas")
        assert hovered["hash"] != first["hash"]
        page.click(".nv-q .token[data-index='7']")
        page.hover(".nv-q .token[data-index='2']")
        assert page.get_attribute("[data-view-root='neuron']", "data-query") == "7"  # locked
        page.keyboard.press("ArrowRight")  # next head: key head 0 -> still 0 for head 1, strips change anyway
        assert page.get_attribute("[data-view-root='neuron']", "data-head") == "1"
        assert signature(page, ".nv-body canvas")["hash"] != hovered["hash"]
        page.keyboard.press("Escape")
        assert page.get_attribute("[data-view-root='neuron']", "data-locked") == "false"
        assert page.locator(".nv-k .token").all_text_contents().count(XSS) == 1
        # A probe without q/k says so instead of failing.
        page.select_option("#probe-select", label="exp3 / probe/noqk")
        page.wait_for_selector("body[data-state=ready]")
        page.wait_for_function("document.querySelector('[data-view-root=neuron] .tba-message').textContent.length > 0")
        assert "not logged" in page.text_content("[data-view-root='neuron'] .tba-message")
        _no_xss(page, dialogs, errors)


def test_neuron_view_compare_mode(server):
    with plugin_page(server) as (page, errors, dialogs):
        open_view(page, "neuron")
        root = "[data-view-root='neuron']"
        plain = signature(page, ".nv-body canvas")
        assert page.locator(".nv-heading[data-col='dsoft']").count() == 0
        page.select_option("#compare-select", label=f"step {STEPS[0]}")
        page.wait_for_selector(f"{root}[data-compare='step {STEPS[0]}']")
        wait_ready(page, "neuron")
        # Reference and Δ columns, labelled with the reference step.
        assert page.text_content(".nv-heading[data-col='dsoft']") == "Δ softmax"
        assert page.locator(".nv-heading[data-col='dscore']").count() == 1
        assert f"Reference: step {STEPS[0]}" in page.text_content(".nv-compare")
        assert f"ref: step {STEPS[0]}" in page.text_content(".nv-header")
        assert page.text_content(".tba-summary").startswith("Δ")
        assert float(page.get_attribute(root, "data-delta-max")) > 0.01
        # The Δ softmax column is painted (PuOr: not all one colour); the q/k strips are still there.
        col = page.evaluate("""() => {
            const c = document.querySelector('.nv-body canvas'), h = document.querySelector('.nv-heading[data-col=dsoft]');
            const dpr = c.width / c.getBoundingClientRect().width, x = Math.round((parseFloat(h.style.left) + 29) * dpr);
            const d = c.getContext('2d').getImageData(x, 0, 1, c.height).data, seen = new Set(); let painted = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3]) { painted++; seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]); }
            return {painted, colours: seen.size}; }""")
        assert col["painted"] > 100 and col["colours"] > 5, col
        assert page.locator(".nv-heading[data-col='q']").count() == 1
        page.hover(".nv-k .token[data-index='3']")
        assert "Δ softmax =" in page.get_attribute(".nv-k .token[data-index='3']", "title")
        # Clearing Compare removes the columns and restores the plain picture.
        page.select_option("#compare-select", label="—")
        page.wait_for_selector(f"{root}[data-compare='']")
        wait_ready(page, "neuron")
        assert page.locator(".nv-heading[data-col='dsoft']").count() == 0
        assert page.text_content(".nv-compare") == ""
        assert signature(page, ".nv-body canvas")["hash"] == plain["hash"]
        # A reference without q/k gets a message, not a failure.
        page.fill("#step-slider", "0")
        page.wait_for_selector(f"body[data-painted-step='{STEPS[0]}'][data-state=ready]")
        page.select_option("#compare-select", label="exp3 / probe/noqk (same step)")
        page.wait_for_function("document.querySelector('.nv-compare').textContent.includes('not logged')")
        wait_ready(page, "neuron")
        assert page.locator(".nv-heading[data-col='dsoft']").count() == 0
        assert signature(page, ".nv-body canvas")["painted"] > 1000
        _no_xss(page, dialogs, errors)


def test_matrix_view_overview_zoom_tooltip(server):
    with plugin_page(server) as (page, errors, dialogs):
        open_view(page, "matrix")
        ov = signature(page, "#matrix-overview")
        det = signature(page, "#matrix-detail")
        assert ov["painted"] == ov["size"] > 0 and det["painted"] > 0
        assert page.locator(".hm-qlabels > div").all_text_contents() == TOKENS  # small: labelled detail
        box = page.locator("#matrix-overview").bounding_box()
        # Drag over the top-left quarter: the detail zooms to it.
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45)
        page.mouse.up()
        zoom = page.get_attribute(".heatmap", "data-zoom")
        assert zoom.startswith("0,") and zoom != f"0,{len(TOKENS)},0,{len(TOKENS)}", zoom
        assert signature(page, "#matrix-detail")["hash"] != det["hash"]
        # Tooltip: token pair and weight.
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
        tip = page.text_content(".hm-tip")
        assert "query" in tip and "key" in tip and "weight" in tip
        # Another head and a step change keep the zoom.
        page.select_option("#matrix-head", "2")
        wait_ready(page, "matrix")
        page.keyboard.press("[")
        page.wait_for_selector(f"body[data-painted-step='{STEPS[1]}'][data-state=ready]")
        assert page.get_attribute(".heatmap", "data-zoom") == zoom
        assert signature(page, "#matrix-overview")["hash"] != ov["hash"]
        page.keyboard.press("Escape")
        assert page.get_attribute(".heatmap", "data-zoom") == f"0,{len(TOKENS)},0,{len(TOKENS)}"
        _no_xss(page, dialogs, errors)


def test_diff_view_steps_runs_and_ranking(server):
    with plugin_page(server) as (page, errors, dialogs):
        open_view(page, "diff")
        assert page.locator("#diff-ranking tr[data-layer]").count() == min(12, L * H)
        changes = [float(x) for x in page.locator("#diff-ranking tr[data-layer] td:nth-child(4)").all_text_contents()]
        assert changes == sorted(changes, reverse=True) and changes[0] > 0.3
        heat = signature(page, "#diff-overview")
        assert heat["painted"] == heat["size"] > 0
        # Clicking a ranking row shows that layer and head.
        row = page.locator("#diff-ranking tr[data-layer]").nth(0)
        layer, head = row.get_attribute("data-layer"), row.get_attribute("data-head")
        row.click()
        page.wait_for_selector(f"body[data-painted-layer='{layer}'][data-state=ready]")
        assert page.input_value("#diff-head") == head
        assert f"step {STEPS[1]}" in page.text_content(".tba-summary")  # default reference: the previous step
        # Compare with the other run at the same step (the shared "Compare with").
        page.select_option("#compare-select", label="exp2 / probe/p (same step)")
        wait_ready(page, "diff")
        assert "exp2" in page.text_content(".tba-summary")
        # At the first step there is no previous step: a message, not an error.
        page.select_option("#compare-select", label="previous step")
        page.fill("#step-slider", "0")
        page.wait_for_selector(f"body[data-painted-step='{STEPS[0]}'][data-state=ready]")
        assert "no previous logged step" in page.text_content("[data-view-root='diff'] .tba-message")
        _no_xss(page, dialogs, errors)


def test_head_model_matrix_views_compare_two_steps(server):
    with plugin_page(server) as (page, errors, dialogs):
        plain = signature(page, "#head-canvas")
        page.select_option("#compare-select", label=f"step {STEPS[0]}")
        page.wait_for_function("document.querySelector('.tba-summary').textContent.startsWith('Δ')")
        wait_ready(page, "head")
        delta = signature(page, "#head-canvas")
        assert delta["painted"] > 200 and delta["hash"] != plain["hash"]
        assert page.locator(".head-toggle").count() == H  # still one toggle per real head
        page.dblclick(".head-toggle[data-head='2']")  # solo works on the Δ picture too
        assert signature(page, "#head-canvas")["hash"] != delta["hash"]
        open_view(page, "model")
        assert page.text_content(".tba-summary").startswith("Δ")
        assert signature(page, ".mv-thumb canvas")["painted"] > 500
        open_view(page, "matrix")
        assert page.text_content(".tba-summary").startswith("Δ")
        page.hover("#matrix-overview")
        assert "Δ weight" in page.text_content(".hm-tip")
        # Comparing with itself is refused with a note, not a blank picture.
        page.select_option("#compare-select", label=f"step {STEPS[-1]}")
        wait_ready(page, "matrix")
        assert "reference is the step shown" in page.text_content(".tba-summary")
        _no_xss(page, dialogs, errors)


def test_matrix_view_at_2048_tokens_draws_tiles(server):
    """Beyond 1,024 × 1,024 weights a head is a tile pyramid (test_browser_scale_views.py): never a whole layer."""
    with plugin_page(server) as (page, errors, dialogs):
        open_view(page, "matrix")
        requests = []
        page.on("request", lambda r: ("attention?" in r.url or "tile?" in r.url) and requests.append(r.url))
        page.select_option("#probe-select", label="long / probe/long")
        page.wait_for_selector("body[data-state=ready][data-painted-view='matrix']")
        page.wait_for_function("window.__tbaTiles && window.__tbaTiles.settled")
        assert requests and all("tile?" in u and "head=0" in u for u in requests), requests
        assert "level=3" in requests[0]  # the coarsest level first: one tile of 256 × 256 cells
        box = page.locator("#matrix-tiles").bounding_box()
        assert box["width"] <= 720 and box["height"] <= 720
        assert page.text_content(".tm-root .hm-caption").startswith("2,048 × 2,048")
        tiles = signature(page, "#matrix-tiles")
        assert tiles["painted"] == tiles["size"]
        page.select_option("#matrix-head", "1")
        page.wait_for_selector("body[data-state=ready][data-painted-view='matrix']")
        assert any("head=1" in u for u in requests)
        _no_xss(page, dialogs, errors)
