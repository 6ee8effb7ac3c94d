"""Chromium tests of exports fit for a paper: PNG at 1×/2×/4×, SVG and PDF with a title line (run, probe, step, layer,
head), colour bar and axes, cropped to the figure; SVG heatmaps as vector cells up to 128 × 128 cells; an HTML
snapshot whose Q/K and Evolution tabs draw from the file alone."""

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from tb_attention import AttentionWriter
from tests.browser_util import browser, open_view, plugin_page, signature
from tests.conftest import softmax_attention, start_tensorboard

TOKENS = [f"w{i}" for i in range(12)]
L, H, D = 2, 3, 8
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(5)
    with AttentionWriter(str(root / "run")) as w:
        for step in (0, 10):
            q = rng.normal(size=(L, H, len(TOKENS), D)).astype(np.float32)
            k = rng.normal(size=(L, H, len(TOKENS), D)).astype(np.float32)
            w.add_attention(
                "probe/p", softmax_attention(rng, L, H, len(TOKENS)), tokens=TOKENS, step=step, queries=q, keys=k
            )
        w.add_attention("probe/long", softmax_attention(rng, 1, 1, 200), tokens=[f"t{i}" for i in range(200)], step=0)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def _download(page, selector):
    with page.expect_download() as info:
        page.click(selector)
    return info.value.path().read_bytes()


def _content_box(png):
    """Bounding box of the pixels that differ from the figure's background (its top-left pixel)."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    diff = np.abs(img - img[0, 0]).sum(-1) > 30
    ys, xs = np.nonzero(diff)
    return img.shape[1], img.shape[0], xs.min(), xs.max(), ys.min(), ys.max()


def test_png_scales_and_is_cropped_to_the_figure(server):
    with plugin_page(server, downloads=True, hash_="#view=matrix&run=run&tag=probe%2Fp&layer=1&head=2") as (page, *_):
        sizes = {}
        for scale in ("1", "2", "4"):
            page.select_option("#export-scale", scale)
            png = _download(page, "#export-png")
            w, h, x0, x1, y0, y1 = _content_box(png)
            sizes[scale] = (w, h)
            # Cropped: the drawing reaches within a margin of every edge (no empty page to its right).
            assert x0 < 0.05 * w and x1 > 0.9 * w and y0 < 0.05 * h and y1 > 0.9 * h, (scale, w, h, x0, x1, y0, y1)
        assert sizes["1"][0] < 1300  # the figure, not the 1,280 px page with the picture in a corner
        for f in (2, 4):
            assert abs(sizes[str(f)][0] - f * sizes["1"][0]) <= f and abs(sizes[str(f)][1] - f * sizes["1"][1]) <= f


def test_svg_has_title_colour_bar_axes_and_vector_cells(server):
    with plugin_page(server, downloads=True, hash_="#view=matrix&run=run&tag=probe%2Fp&layer=1&head=2") as (page, *_):
        tree = ET.fromstring(_download(page, "#export-svg"))
        texts = [t.text or "" for t in tree.iter(f"{SVG}text")]
        title = next(t for t in tree.iter(f"{SVG}text") if t.get("class") == "tba-title").text
        assert title == "run / probe/p · step 10 · Matrix view · layer 1 · head 2"
        assert "attention weight" in texts and "key position →" in texts  # colour bar title, axis title
        assert sum(bool(re.fullmatch(r"0(\.\d+)?|1", t)) for t in texts) >= 3  # colour bar ticks
        assert {"0", "5", "10"} <= set(texts)  # position ticks
        assert set(TOKENS) <= set(texts)  # token labels, as text
        rects = list(tree.iter(f"{SVG}rect"))
        # Overview and zoomed window: 12 × 12 cells each, as rects (plus the colour bar's bands).
        assert len(rects) >= 2 * len(TOKENS) ** 2
        assert not any(i.get("href", "").startswith("data:") for i in tree.iter(f"{SVG}image"))
    with plugin_page(server, downloads=True, hash_="#view=matrix&run=run&tag=probe%2Flong") as (page, *_):
        tree = ET.fromstring(_download(page, "#export-svg"))
        # 200 × 200 = 40,000 cells: above 128 × 128 the overview is an embedded image, the window still vector.
        assert len([i for i in tree.iter(f"{SVG}image") if i.get("href", "").startswith("data:image/png")]) == 1
        assert "attention weight" in [t.text for t in tree.iter(f"{SVG}text")]


def _pdf_page(data):
    """(text, content stream, image XObjects) of a one-page PDF, parsed by pypdf."""
    import pypdf

    assert data.startswith(b"%PDF-1.")
    reader = pypdf.PdfReader(io.BytesIO(data), strict=True)
    assert len(reader.pages) == 1
    page = reader.pages[0]
    images = [o for o in page["/Resources"].get("/XObject", {}).values() if o.get_object()["/Subtype"] == "/Image"]
    return page.extract_text(), page.get_contents().get_data().decode("latin-1"), images, reader


def test_pdf_is_vector_with_title_text_colour_bar_and_cells(server):
    with plugin_page(server, downloads=True, hash_="#view=matrix&run=run&tag=probe%2Fp&layer=1&head=2") as (page, *_):
        svg = ET.fromstring(_download(page, "#export-svg"))
        text, content, images, reader = _pdf_page(_download(page, "#export-pdf"))
    title = "run / probe/p · step 10 · Matrix view · layer 1 · head 2"
    assert title in text and reader.metadata.title == title
    assert "attention weight" in text and "key position" in text and all(t in text for t in TOKENS)
    # The same size as the SVG (1 CSS px = 0.75 pt), heatmap cells as filled rectangles, no bitmap.
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(
        (0.75 * float(svg.get("width")), 0.75 * float(svg.get("height"))), abs=0.01
    )
    assert content.count(" re f") >= 2 * len(TOKENS) ** 2 and images == []
    assert content.count("Tj") >= len(TOKENS) and "/F1" in content
    with plugin_page(server, downloads=True, hash_="#view=matrix&run=run&tag=probe%2Flong") as (page, *_):
        text, content, images, _ = _pdf_page(_download(page, "#export-pdf"))
    # 200 × 200 cells: the overview is an embedded bitmap (as in the SVG), the text is still text.
    assert len(images) == 1 and "attention weight" in text


def test_evolution_exports_its_plots_axes_and_labels_as_vectors(server):
    with plugin_page(server, downloads=True, hash_="#view=evolution&run=run&tag=probe%2Fp") as (page, *_):
        page.wait_for_selector("#evo-series")
        page.wait_for_function("document.querySelector('#evo-rollout').width > 10")
        tree = ET.fromstring(_download(page, "#export-svg"))
        text, content, images, _ = _pdf_page(_download(page, "#export-pdf"))
    texts = [t.text or "" for t in tree.iter(f"{SVG}text")]
    # Small multiples: head titles, layer labels, value and step ticks, the axis title; one polyline per plot's
    # series and its border, dashed step cursors. The grid: layer labels and one rect per head.
    assert {"training step →", "head →", "L0", "L1", "H0", "H2"} <= set(texts)
    assert {"0", "10"} <= set(texts)  # step ticks
    lines = list(tree.iter(f"{SVG}polyline"))
    assert len(lines) >= 3 * L * H and sum(bool(p.get("stroke-dasharray")) for p in lines) == L * H
    # The rollout too: vector cells and token labels, the column labels turned a quarter (no bitmap left).
    assert [i for i in tree.iter(f"{SVG}image")] == []
    turned = [t for t in tree.iter(f"{SVG}text") if (t.get("transform") or "").startswith("rotate(-90")]
    assert turned and {t.text for t in turned} <= set(texts)
    assert "training step" in text and "head" in text and images == [] and "[3 2] 0 d" in content
    assert "0 -1 -1 0" in content  # the PDF's turned text matrix


def test_the_snapshot_draws_the_qk_and_evolution_tabs_from_the_file(server, tmp_path):
    with plugin_page(server, downloads=True, hash_="#view=neuron&run=run&tag=probe%2Fp&head=1&q=3") as (page, *_):
        html = _download(page, "#export-html")
    path = tmp_path / "snapshot.html"
    path.write_bytes(html)
    with browser() as opener:
        page = opener.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-state=ready][data-painted-view='neuron']", timeout=30_000)
        assert page.input_value("#neuron-head") == "1"  # opened at the exported picture
        assert page.get_attribute("[data-view-root='neuron']", "data-query") == "3"
        open_view(page, "embedding")
        page.wait_for_selector(".emb-view[data-emb-method]")
        assert signature(page, ".emb-cell canvas")["painted"] > 100
        assert "404" not in page.text_content(".emb-view")
        open_view(page, "evolution")
        page.wait_for_function("document.querySelector('#evo-rollout').width > 10")
        assert "unavailable" not in page.text_content(".evo-view")
        assert [u for u in requests if not u.startswith(("file:", "blob:", "data:"))] == []
