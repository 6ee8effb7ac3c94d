"""The real thing: TensorBoard serving a logdir, the plugin iframe in headless Chromium, the head view painting.

Needs /usr/bin/chromium (or `chromium` on PATH) and Python playwright. Missing Chromium is a failure, not a skip:
this is the only test that exercises the frontend bundle end to end.
"""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import browser

XSS = "<img src=x onerror=alert(1)>"
TOKENS = ["[CLS]", "the", "cat", XSS, "sat", "on", "the", "mat", ".", "it", "was", "warm", "and", "soft", "!", "[SEP]"]
STEPS = [0, 50, 100]
LAYERS, HEADS, D_HEAD = 2, 4, 8

# Canvas signature computed in the frame: how many pixels are painted, and a hash of all of them.
CANVAS_SIGNATURE_JS = """() => {
  const c = document.querySelector('#head-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0, h = 2166136261;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] !== 0) painted++;
    h = Math.imul(h ^ (d[i] | (d[i + 1] << 8) | (d[i + 2] << 16) | (d[i + 3] << 24)), 16777619) >>> 0;
  }
  return {painted, hash: h, size: d.length / 4};
}"""


def _pattern(step_index, T):
    """Clearly different pictures per step: attend to self, then to the previous token, then to [CLS]."""
    target = [np.arange(T), np.maximum(np.arange(T) - 1, 0), np.zeros(T, dtype=int)][step_index]
    attn = np.full((LAYERS, HEADS, T, T), 0.1 / (T - 1), dtype=np.float32)
    for layer in range(LAYERS):
        for head in range(HEADS):
            attn[layer, head, np.arange(T), (target + layer + head * (step_index != 2)) % T] = 0.9
    return attn / attn.sum(-1, keepdims=True)


@pytest.fixture
def logdir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "logs"
    T = len(TOKENS)
    with AttentionWriter(str(root / "exp1")) as w:
        for i, step in enumerate(STEPS):
            q = rng.normal(size=(LAYERS, HEADS, T, D_HEAD)).astype(np.float32)
            k = rng.normal(size=(LAYERS, HEADS, T, D_HEAD)).astype(np.float32)
            w.add_attention("probe/copy", _pattern(i, T), tokens=TOKENS, step=step, queries=q, keys=k)
    return root


def _plugin_frame(page, timeout_s=60):
    deadline = page.evaluate("Date.now()") + timeout_s * 1000
    while page.evaluate("Date.now()") < deadline:
        for frame in page.frames:
            if "plugin_entry.html?name=attention" in frame.url:
                return frame
        page.wait_for_timeout(200)
    raise AssertionError(f"no attention plugin iframe; frames: {[f.url for f in page.frames]}")


def test_head_view_in_tensorboard(logdir, tensorboard_server):
    base_url = tensorboard_server(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")

    with browser() as opener:
        page = opener.new_page(viewport={"width": 1280, "height": 900})
        dialogs, plugin_errors = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def on_console(msg):
            if msg.type == "error" and "/data/plugin" in (msg.location or {}).get("url", ""):
                plugin_errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda e: plugin_errors.append(f"uncaught: {e}"))
        page.goto(base_url + "#attention")

        frame = _plugin_frame(page)
        frame.wait_for_selector("body[data-state=ready]", timeout=60_000)
        # The newest step is shown first, at layer 0.
        assert frame.evaluate("document.body.dataset.paintedStep") == str(STEPS[-1])
        assert frame.evaluate("document.body.dataset.paintedLayer") == "0"
        assert isinstance(frame.evaluate("window.__tbaFirstPaintMs"), (int, float))
        assert frame.locator(".token.left").count() == len(TOKENS)
        assert frame.locator(".token.right").count() == len(TOKENS)
        assert frame.locator(".head-toggle").count() == HEADS
        first = frame.evaluate(CANVAS_SIGNATURE_JS)
        assert first["painted"] > 500, first

        # Scrub to the first step: a different step is painted and the picture changes.
        assert frame.text_content("#step-label").startswith(str(STEPS[-1]))
        frame.fill("#step-slider", "0")
        frame.wait_for_selector(f"body[data-painted-step='{STEPS[0]}'][data-state=ready]", timeout=30_000)
        assert frame.text_content("#step-label").startswith(str(STEPS[0]))
        at_step0 = frame.evaluate(CANVAS_SIGNATURE_JS)
        assert at_step0["painted"] > 500 and at_step0["hash"] != first["hash"], (first, at_step0)

        # Hovering a query token isolates its lines and paints weight boxes: the picture changes.
        frame.hover(".token.left[data-index='5']")
        hovered = frame.evaluate(CANVAS_SIGNATURE_JS)
        assert hovered["hash"] != at_step0["hash"] and hovered["painted"] > 0
        assert frame.locator(".token.left[data-index='5'].hovered").count() == 1
        page.mouse.move(2, 2)  # leaving restores the full view exactly
        assert frame.evaluate(CANVAS_SIGNATURE_JS)["hash"] == at_step0["hash"]

        # Soloing a head redraws with fewer lines; layer selection survives a step change.
        frame.dblclick(".head-toggle[data-head='1']")
        assert frame.locator(".head-toggle.off").count() == HEADS - 1
        assert frame.evaluate(CANVAS_SIGNATURE_JS)["hash"] != at_step0["hash"]
        frame.select_option("#layer-select", "1")
        frame.wait_for_selector("body[data-painted-layer='1'][data-state=ready]", timeout=30_000)
        frame.fill("#step-slider", "1")
        frame.wait_for_selector(f"body[data-painted-step='{STEPS[1]}'][data-state=ready]", timeout=30_000)
        assert frame.evaluate("document.body.dataset.paintedLayer") == "1"
        assert frame.locator(".head-toggle.off").count() == HEADS - 1
        # Per-head mean entropy from the head_stats route is the toggle's tooltip.
        assert "entropy" in frame.get_attribute(".head-toggle[data-head='0']", "title")

        # The untrusted token is text, never markup.
        texts = frame.eval_on_selector_all(".token", "els => els.map(e => e.textContent)")
        assert texts.count(XSS) == 2  # once per column
        assert frame.locator("img").count() == 0
        assert dialogs == []
        assert frame.evaluate("document.body.dataset.state") == "ready"
        assert plugin_errors == []
