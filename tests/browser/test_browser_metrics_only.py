"""A tag with metrics only (add_metrics, no attention step) is listed and drawn by the Evolution tab, labelled with
the model's layer and head numbers that add_metrics(..., layers=) recorded (head_stats meta.layers)."""

import json
import urllib.request

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.browser_util import plugin_page
from tests.conftest import softmax_attention, start_tensorboard


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics_only")
    rng = np.random.default_rng(0)
    with AttentionWriter(str(root / "r")) as w:
        for step in range(3):
            attn = softmax_attention(rng, 1, 2, 6)  # stored layer 0, heads 0-1 = the model's layer 5, heads 0 and 3
            w.add_metrics("m", attn, step=step, layers=[{"index": 5, "heads": [0, 3]}])
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def test_metrics_only_tag_is_labelled_with_the_models_numbers(server):
    plugin = server + "data/plugin/attention/"
    runs = json.loads(_get(plugin + "runs"))["runs"]
    assert runs == [{"run": "r", "probes": [], "problems": [], "metrics_only": ["m"]}]
    meta, _ = codec.unpack(_get(plugin + "head_stats?run=r&tag=m"))
    assert meta["layers"] == [{"index": 5, "heads": [0, 3]}]

    with plugin_page(server, width=1200, height=900, hash_="#view=evolution&run=r&tag=m") as (page, errors, _):
        assert page.get_attribute("body", "data-painted-view") == "evolution"
        assert "metrics only" in page.locator(".tba-summary").text_content()
        # The ranking table names the heads as the model does: layer 5, heads 0 and 3 (never stored 0 / 1).
        page.select_option("#evo-ref", "step:0")
        page.wait_for_selector("body[data-state=ready][data-painted-view=evolution]")
        page.wait_for_function("() => document.querySelectorAll('#evo-rank tbody tr').length === 2")
        cells = page.locator("#evo-rank tbody tr").evaluate_all(
            "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert sorted((c[1], c[2]) for c in cells) == [("5", "0"), ("5", "3")]
        # Hovering the grid's second column: "Layer 5, head 3".
        box = page.locator("#evo-grid").bounding_box()
        g = json.loads(page.get_attribute("#evo-grid", "data-geom"))
        page.mouse.move(box["x"] + g["x0"] + 1.5 * g["cell"], box["y"] + g["y0"] + 0.5 * g["cell"])
        page.wait_for_function("() => document.querySelector('#evo-grid').title.startsWith('Layer 5, head 3:')")
        assert "rollout needs attention" in page.locator(".evo-panel .evo-note").nth(2).text_content().lower()
        assert not [e for e in errors if "uncaught" in e], errors
