"""Chromium: the head view's ViT image overlay (attention of the chosen query token painted over the logged image).

A 4x4 grid of 8-px patches, each a flat colour, plus [CLS]; every query attends ~0.997 to one known patch (per
head), so which cells are painted is exact. One TensorBoard process for the module; each test opens its own page.
"""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import browser, plugin_page, signature, wait_ready
from tests.conftest import start_tensorboard

ROWS = COLS = 4
PATCH = 8
T = 1 + ROWS * COLS
TOKENS = ["[CLS]"] + [f"patch({r},{c})" for r in range(ROWS) for c in range(COLS)]
SCALE = 256 // (COLS * PATCH)  # the overlay enlarges a 32-px image by 8


def _target(query, head):
    """Patch (0..15) that `query` attends to in `head`: CLS -> patch 0 (head 0), patch p -> p + 5."""
    return (query * 5 + head) % (ROWS * COLS)


def _image():
    rng = np.random.default_rng(3)
    colours = rng.integers(40, 216, size=(ROWS, COLS, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, PATCH, 0), PATCH, 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlay")
    attn = np.full((1, 2, T, T), 0.003 / (T - 1), np.float32)  # faint enough not to be painted
    for head in range(2):
        for q in range(T):
            attn[0, head, q, 1 + _target(q, head)] = 0.997
    with AttentionWriter(str(root / "a_vit")) as w:
        w.add_attention(
            "vit",
            attn,
            tokens=TOKENS,
            step=0,
            image=_image(),
            patch_grid={"rows": ROWS, "cols": COLS, "patch_size": PATCH},
        )
    with AttentionWriter(str(root / "b_text")) as w:
        w.add_attention("text", attn, tokens=[f"w{i}" for i in range(T)], step=0)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


_CELLS_JS = """([n, cell]) => {
  const c = document.getElementById('image-overlay-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const out = [];
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) {
    const x = k * cell + cell / 4, y = r * cell + cell / 2;  // off-centre: clear of the query outline
    const i = (y * c.width + x) * 4;
    out.push([d[i], d[i + 1], d[i + 2]]);
  }
  return out;
}"""


def _painted_cells(page):
    """Indices of the patches whose pixels differ from the bare image."""
    got = np.array(page.evaluate(_CELLS_JS, [ROWS, PATCH * SCALE]))
    bare = _image()[PATCH // 2 :: PATCH, PATCH // 4 :: PATCH][:ROWS, :COLS].reshape(-1, 3)
    return set(np.flatnonzero(np.abs(got - bare).sum(1) > 0).tolist())


def _click_patch(page, row, col):
    box = page.locator("#image-overlay-canvas").bounding_box()
    page.mouse.click(box["x"] + (col + 0.5) * PATCH * SCALE, box["y"] + (row + 0.5) * PATCH * SCALE)


def test_overlay_paints_the_query_attention_over_the_image(server):
    with plugin_page(server) as (page, errors, _):
        overlay = page.locator(".tba-image-overlay")
        assert overlay.is_visible()
        assert page.evaluate("document.getElementById('image-overlay-canvas').width") == COLS * PATCH * SCALE
        # Default query: [CLS]; mean of both heads -> patches 0 and 1 painted, every other pixel is the image's.
        assert overlay.get_attribute("data-query") == "0"
        assert _painted_cells(page) == {_target(0, 0), _target(0, 1)}
        assert "[CLS]: 0.00" in page.locator(".tba-overlay-legend").inner_text()
        # Hovering another query token moves the heatmap; the query's own patch gets an outline.
        before = signature(page, "#image-overlay-canvas")
        page.hover(".token.left[data-index='3']")
        assert overlay.get_attribute("data-query") == "3"
        assert signature(page, "#image-overlay-canvas")["hash"] != before["hash"]
        assert _painted_cells(page) == {_target(3, 0), _target(3, 1)}
        legend = page.locator(".tba-overlay-legend").inner_text()
        assert "patch(0,2)" in legend and "[CLS]: 0.00" in legend
        # Soloing head 1 shows only its patch.
        page.keyboard.press("ArrowRight")  # solo head 0
        page.keyboard.press("ArrowRight")  # solo head 1
        wait_ready(page, "head")
        page.hover(".token.left[data-index='3']")
        assert _painted_cells(page) == {_target(3, 1)}
        assert "head 1" in page.locator(".tba-overlay-legend").inner_text()
        assert errors == []


def test_clicking_a_patch_selects_its_query_token(server):
    with plugin_page(server) as (page, errors, _):
        _click_patch(page, 2, 3)
        index = 1 + 2 * COLS + 3
        assert page.locator(f".token.left[data-index='{index}'].locked").count() == 1
        assert page.locator("[data-view-root=head] .head-view").get_attribute("data-locked") == f"left:{index}"
        assert page.locator(".tba-image-overlay").get_attribute("data-query") == str(index)
        assert _painted_cells(page) == {_target(index, 0), _target(index, 1)}
        page.hover(".token.left[data-index='1']")  # a lock holds against hovering
        assert page.locator(".tba-image-overlay").get_attribute("data-query") == str(index)
        page.keyboard.press("Escape")
        page.mouse.move(2, 2)
        assert page.locator(".tba-image-overlay").get_attribute("data-query") == "0"
        # With special tokens hidden the token indices shift; a patch still picks its own token.
        page.select_option("#special-select", "hide")
        wait_ready(page, "head")
        _click_patch(page, 2, 3)
        assert page.locator(".token.left.locked").inner_text() == "patch(2,3)"
        assert _painted_cells(page) == {_target(index, 0), _target(index, 1)}
        assert errors == []


def test_no_overlay_for_probes_without_an_image(server):
    with plugin_page(server) as (page, errors, _):
        page.evaluate("window.__tba.select({probe: {run: 'b_text', tag: 'text'}})")
        page.wait_for_selector("body[data-state=ready][data-painted-view='head']")
        page.wait_for_function("document.querySelector('.token.left').textContent === 'w0'")
        assert not page.locator(".tba-image-overlay").is_visible()
        assert errors == []


def test_offline_snapshot_keeps_the_overlay(server, tmp_path):
    with plugin_page(server, downloads=True) as (page, errors, _):
        with page.expect_download() as info:
            page.click("#export-html")
        (tmp_path / "s.html").write_bytes(info.value.path().read_bytes())
    with browser() as opener:
        page = opener.new_page()
        page.goto((tmp_path / "s.html").as_uri())
        page.wait_for_selector("body[data-state=ready][data-painted-view='head']", timeout=30_000)
        assert _painted_cells(page) == {_target(0, 0), _target(0, 1)}  # the image came from the file
