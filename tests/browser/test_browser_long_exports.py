"""Chromium tests of the exports of steps the views never load whole (frontend/src/export/longParts.ts): a 4,096-token
probe (1 layer × 2 heads of weights) and a q/k-only ("qk") probe of 1,024 tokens. Pictures export what is drawn
(tile map, sparse head view, thumbnail grid), the npz takes the shown head and the top-k with a note, the HTML
snapshot holds what its tabs draw; no export asks for a whole layer."""

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from tb_attention import AttentionWriter
from tests.browser.test_browser_scale_views import HEADS, PEAK, TOKENS, N, _weights, peak_of
from tests.browser_util import browser, open_view, plugin_page, signature, wait_ready
from tests.conftest import start_tensorboard

QN, QD = 1024, 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("long_exports")
    rng = np.random.default_rng(3)
    q = (rng.normal(size=(1, 2, QN, QD)) * 2).astype(np.float32)
    k = (rng.normal(size=(1, 1, QN, QD)) * 2).astype(np.float32)
    entry = {"index": 4, "scaling": QD**-0.5, "mask": "causal", "offset": 0, "bias": "none"}
    with AttentionWriter(str(root / "big")) as w:
        w.add_attention("probe/long", _weights(), tokens=TOKENS, step=0)
        w.add_attention(
            "probe/qk", None, tokens=[f"q{i}" for i in range(QN)], step=0, queries=q, keys=k, layers=[entry], store="qk"
        )
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def _download(page, selector):
    with page.expect_download(timeout=120_000) as info:
        page.click(selector)
    return info.value.path().read_bytes()


def _whole_layers(page):
    urls = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    return [u for u in urls if "/attention?" in u and "head=" not in u]


def _png_drawn(png):
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return img.shape, int((np.abs(img - img[0, 0]).sum(-1) > 30).sum())


@pytest.mark.parametrize("view", ["matrix", "head", "model"])
def test_pictures_of_a_4096_token_probe_are_what_is_drawn(server, view):
    with plugin_page(server, downloads=True, hash_=f"#view={view}&run=big&tag=probe%2Flong") as (page, errors, _):
        wait_ready(page, view)
        if view == "model":
            page.wait_for_selector("#model-thumbs[data-done='1']", timeout=30_000)
        shown = signature(page, f"[data-view-root={view}] canvas")
        assert shown["painted"] > 1000
        shape, drawn = _png_drawn(_download(page, "#export-png"))
        assert drawn > 0.2 * shown["painted"] / 4, (shape, drawn, shown)  # the drawn canvases (2x), not a blank
        tree = ET.fromstring(_download(page, "#export-svg"))
        assert list(tree.iter("{http://www.w3.org/2000/svg}image")) or list(
            tree.iter("{http://www.w3.org/2000/svg}path")
        )
        assert _whole_layers(page) == []
        assert not [e for e in errors if "uncaught" in e], errors


def test_npz_of_a_4096_token_probe_holds_the_shown_head_topk_and_a_note(server):
    with plugin_page(server, downloads=True, hash_="#view=matrix&run=big&tag=probe%2Flong&head=1") as (page, *_):
        wait_ready(page, "matrix")
        data = np.load(io.BytesIO(_download(page, "#export-npz")))
        assert _whole_layers(page) == []
    assert "attention" not in data and list(data["attention_layers"]) == []
    assert list(data["partial_layer"]) == [0, 1]  # stored layer 0, the shown head 1
    head = data["attention_head"]
    assert head.shape == (N, N)
    rows = np.arange(0, N, 97)
    assert np.allclose(head[rows, peak_of(1, rows)], PEAK, atol=0.02)  # cbrt8 coding: within ~1 %
    assert data["topk_keys"].shape[:2] == (HEADS, N) and (data["topk_keys"][1, rows, 0] == peak_of(1, rows)).all()
    assert np.allclose(data["topk_weights"][1, rows, 0], PEAK, atol=0.02)
    assert "not exported whole" in str(data["note"][0]) and "4,096 tokens" in str(data["note"][0])
    assert data["head_index"].shape == (1, HEADS) and len(data["tokens"]) == N


def test_npz_of_a_qk_probe_holds_queries_keys_and_the_rebuilt_head(server):
    with plugin_page(server, downloads=True, hash_="#view=head&run=big&tag=probe%2Fqk") as (page, *_):
        wait_ready(page, "head")
        data = np.load(io.BytesIO(_download(page, "#export-npz")))
        assert _whole_layers(page) == []
    assert "attention" not in data and data["queries"].shape == (1, 2, QN, QD) and data["keys"].shape == (1, 1, QN, QD)
    head = data["attention_head"]
    assert head.shape == (QN, QN) and np.allclose(head.sum(-1), 1, atol=0.05) and np.allclose(np.triu(head, 1), 0)
    assert "queries and keys only" in str(data["note"][0]) and list(data["layer_index"]) == [4]


@pytest.mark.parametrize("tag,view,canvas", [("long", "matrix", "#matrix-tiles"), ("qk", "head", ".head-view canvas")])
def test_the_snapshot_of_a_long_or_qk_probe_draws_from_the_file(server, tmp_path, tag, view, canvas):
    with plugin_page(server, downloads=True, hash_=f"#view={view}&run=big&tag=probe%2F{tag}") as (page, *_):
        wait_ready(page, view)
        if view == "matrix":
            page.wait_for_function("window.__tbaTiles && window.__tbaTiles.settled", timeout=30_000)
        html = _download(page, "#export-html")
        assert _whole_layers(page) == []
    path = tmp_path / "snapshot.html"
    path.write_bytes(html)
    with browser() as opener:
        page = opener.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector(f"body[data-state=ready][data-painted-view='{view}']", timeout=60_000)
        assert signature(page, canvas)["painted"] > 1000
        for other in ("head", "model", "matrix"):
            if other != view:
                open_view(page, other)  # each tab draws from what the file holds
                assert signature(page, f"[data-view-root={other}] canvas")["painted"] > 100, other
        assert [u for u in requests if not u.startswith(("file:", "blob:", "data:"))] == []
