"""Chromium test of the evolution view: 1,000 steps × 72 heads of metrics load and draw in ≤ 2 s; grid, small
multiples with the shared step cursor, click-through to the head view, what-changed ranking, rollout."""

import json

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page, signature, wait_ready
from tests.conftest import start_tensorboard

XSS = "<img src=x onerror=alert(1)>"
L, H, T = 6, 12, 13  # 72 heads
STEPS = 1000
PROBE_EVERY = 250
TOKENS = ["<bos>", "a", "b", XSS, "d", "e", "f", "a", "b", XSS, "d", "e", "f"]


def _attention(t):
    """Causal uniform attention that turns, over training (t: 0 → 1), into an induction pattern in layer 1."""
    base = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    attn = np.broadcast_to(base, (L, H, T, T)).copy()
    induction = np.zeros((T, T))
    induction[np.arange(T), np.arange(T)] = 1.0
    for i in range(7, T):
        induction[i] = 0
        induction[i, i - 5] = 1.0  # the token after the earlier occurrence
    ramp = min(1.0, max(0.0, (t - 0.2) * 3))  # forms between 20 % and 53 % of training
    attn[1, :4] = (1 - ramp) * base + ramp * induction
    return attn.astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("evolution")
    for run, steps in (("exp1", STEPS), ("exp2", 300)):
        with AttentionWriter(str(root / run)) as w:
            for step in range(steps):
                attn = _attention(step / STEPS)
                w.add_metrics("probe/p", attn, step=step, tokens=TOKENS)
                if step % PROBE_EVERY == 0:
                    w.add_attention("probe/p", attn, tokens=TOKENS, step=step)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def test_evolution_view(server):
    with plugin_page(server, width=1400, height=1000) as (page, errors, dialogs):
        page.evaluate("() => { window.__t0 = performance.now(); }")
        open_view(page, "evolution")
        elapsed = page.evaluate("() => performance.now() - window.__t0")
        timing = page.evaluate("() => window.__tbaEvolution")
        assert timing["series"] == L * H and timing["steps"] == STEPS
        assert timing["loadMs"] + timing["drawMs"] <= 2000, timing
        assert elapsed <= 2000 + 1000, elapsed  # tab switch to ready, including the first rank/rollout requests
        grid = signature(page, "#evo-grid")
        series = signature(page, "#evo-series")
        assert grid["painted"] > 0 and series["painted"] > 0
        assert page.locator("#evo-grid").evaluate("c => c.width") > 0

        # Another metric recolours the grid and redraws the series.
        page.select_option("#evo-metric", "prev_token")
        wait_ready(page, "evolution")
        assert signature(page, "#evo-grid")["hash"] != grid["hash"]
        page.select_option("#evo-metric", "induction")
        wait_ready(page, "evolution")

        # Clicking a time series moves the shared step cursor to the nearest logged probe step.
        assert page.get_attribute("body", "data-painted-step") == "750"  # the shell opens at the last step
        box = page.locator("#evo-series").bounding_box()
        geom = json.loads(page.get_attribute("#evo-series", "data-geom"))  # the plots' origin and size
        page.mouse.click(box["x"] + geom["x0"] + 0.55 * geom["w"], box["y"] + geom["y0"] + geom["h"] / 2)
        page.wait_for_selector("body[data-state=ready][data-painted-view=evolution][data-painted-step='500']")
        assert signature(page, "#evo-series")["hash"] != series["hash"]

        # What changed: since step 0, the induction heads (layer 1, heads 0-3) rank first.
        page.select_option("#evo-ref", "step:0")
        wait_ready(page, "evolution")
        rows = page.locator("#evo-rank tbody tr")
        assert rows.count() == 12
        top = {(rows.nth(i).get_attribute("data-layer"), rows.nth(i).get_attribute("data-head")) for i in range(4)}
        assert top == {("1", "0"), ("1", "1"), ("1", "2"), ("1", "3")}
        page.select_option("#evo-compare", "jsd")
        wait_ready(page, "evolution")
        page.wait_for_function("() => document.querySelector('#evo-rank h3, .evo-panel h3') !== null")
        assert "Jensen" in page.locator(".evo-panel .evo-note").nth(1).text_content()
        assert page.locator("#evo-rank tbody tr").first.get_attribute("data-layer") == "1"
        page.select_option("#evo-ref", "run:exp2")  # the same probe in another run
        wait_ready(page, "evolution")
        # exp2 logged attention only at steps 0 and 250: compared with its last one at or before step 500.
        assert "run exp2 at step 250" in page.locator(".evo-panel h3").nth(1).text_content()
        assert page.locator("#evo-rank tbody tr").count() == 12
        page.select_option("#evo-compare", "metric")  # metrics: exp2's last step at or before 500 (299)
        wait_ready(page, "evolution")
        assert page.locator("#evo-rank tbody tr").count() == 12
        assert "run exp2" in page.locator(".evo-panel h3").nth(1).text_content()

        # Rollout at the current step, labelled as an approximation; the fusion changes it.
        assert "approximation" in page.locator(".evo-panel h3").nth(2).text_content()
        rollout = signature(page, "#evo-rollout")
        assert rollout["painted"] > 0
        page.select_option("#evo-fusion", "max")
        wait_ready(page, "evolution")
        page.wait_for_function(
            "(h) => { const c = document.querySelector('#evo-rollout'); return c && c.width > 0; }", arg=None
        )

        # Clicking a grid cell opens that layer in the head view at the same step ...
        gbox = page.locator("#evo-grid").bounding_box()
        g = json.loads(page.get_attribute("#evo-grid", "data-geom"))
        page.mouse.click(gbox["x"] + g["x0"] + 2.5 * g["cell"], gbox["y"] + g["y0"] + 3.5 * g["cell"])
        wait_ready(page, "head")
        assert page.get_attribute("body", "data-painted-layer") == "3"
        assert page.get_attribute("body", "data-painted-step") == "500"
        # ... with the clicked head (2) soloed.
        page.wait_for_function(f"() => document.querySelectorAll('.head-toggle.off').length === {H - 1}")
        assert "off" not in page.get_attribute(".head-toggle[data-head='2']", "class")

        assert page.locator("img").count() == 0 and dialogs == [] and errors == []
