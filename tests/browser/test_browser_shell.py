"""The tabbed shell: tabs switch views, the selection survives, keyboard step/layer keys work."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page, signature, wait_ready
from tests.conftest import softmax_attention

TOKENS = ["[CLS]", "a", "b", "c", "d", "e", "f", "[SEP]"]
STEPS = [0, 10, 20]


@pytest.fixture
def logdir(tmp_path):
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "exp1")) as w:
        for step in STEPS:
            w.add_attention("probe/p", softmax_attention(rng, 3, 4, len(TOKENS)), tokens=TOKENS, step=step)
    return tmp_path


def test_tabs_and_keyboard(logdir, tensorboard_server):
    url = tensorboard_server(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(url) as (page, errors, _):
        assert page.locator(".tba-tab[data-view='head']").count() == 1
        assert page.get_attribute(".tba-tab[data-view='head']", "aria-selected") == "true"
        assert page.evaluate("document.body.dataset.view") == "head"
        assert page.locator("[data-view-root='head']").is_visible()
        assert signature(page, "#head-canvas")["painted"] > 100
        # Keyboard: `[` goes one step back, ↓ one layer down; the head view repaints at that selection.
        page.keyboard.press("[")
        wait_ready(page)
        page.wait_for_selector(f"body[data-painted-step='{STEPS[1]}'][data-state=ready]")
        page.keyboard.press("ArrowDown")
        page.wait_for_selector("body[data-painted-layer='1'][data-state=ready]")
        # →: solo the next head.
        page.keyboard.press("ArrowRight")
        assert page.locator(".head-toggle.off").count() == 3
        # select() from a view (here: the test) switches tab, step and layer at once.
        page.evaluate("__tba.select({view: 'head', step: 0, layer: 2})")
        page.wait_for_selector("body[data-painted-step='0'][data-painted-layer='2'][data-state=ready]")
        assert page.locator(".head-toggle.off").count() == 3  # the head selection survived
        tabs = page.eval_on_selector_all(".tba-tab", "els => els.map(e => e.dataset.view)")
        assert tabs[:5] == ["head", "model", "neuron", "matrix", "diff"]
        for view in tabs[:5]:
            open_view(page, view)
            assert page.locator(f"[data-view-root='{view}']").is_visible()
            assert page.evaluate("document.body.dataset.state") == "ready"
        assert errors == []
        # Other views may need data this logdir lacks; they must still settle (ready, or an error message).
        for view in tabs[5:]:
            page.click(f".tba-tab[data-view='{view}']")
            page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=30_000)
            assert page.evaluate("document.body.dataset.view") == view


def test_follows_tensorboard_dark_mode(logdir, tensorboard_server):
    from tests.browser_util import browser

    url = tensorboard_server(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with browser() as opener:
        page = opener.new_page()
        page.goto(url + "#attention")
        frame = None
        for _ in range(300):
            frame = next((f for f in page.frames if "plugin_entry.html?name=attention" in f.url), None)
            if frame:
                break
            page.wait_for_timeout(100)
        assert frame is not None
        frame.wait_for_selector("body[data-state=ready]", timeout=60_000)
        assert not frame.evaluate("document.body.classList.contains('tba-dark')")
        page.evaluate("document.body.classList.add('dark-mode')")  # what TensorBoard's dark-mode toggle does
        frame.wait_for_function("document.body.classList.contains('tba-dark')", timeout=10_000)
        page.evaluate("document.body.classList.remove('dark-mode')")
        frame.wait_for_function("!document.body.classList.contains('tba-dark')", timeout=10_000)
