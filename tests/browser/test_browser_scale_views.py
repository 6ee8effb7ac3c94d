"""Chromium tests of the views at LLM scale (issue 12): the matrix view's tile pyramid, the virtual head view with
server top-k lines, and the model view's thumbnail grid, on a 4,096-token probe (1 layer × 2 heads of stored
weights, ~32 MB: the level-of-detail routes serve weight-stored probes too). Shapes are otherwise small."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser.test_browser_theme import CONTRAST_JS, LIGHT_CANVAS_JS
from tests.browser_util import open_view, plugin_page, signature, wait_ready
from tests.conftest import start_tensorboard

N = 4096
HEADS = 2
TOKENS = [f"w{i}" for i in range(N)]
PEAK = 0.9


def peak_of(head, i):
    """The key each query attends to with weight 0.9 (the rest spread evenly): easy to check pixel by pixel."""
    return (i * 37 + head * 11) % N


def _weights():
    rest = (1 - PEAK) / (N - 1)
    w = np.full((1, HEADS, N, N), rest, dtype=np.float32)
    rows = np.arange(N)
    for h in range(HEADS):
        w[0, h, rows, peak_of(h, rows)] = PEAK
    return w


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    with AttentionWriter(str(root / "big")) as w:
        w.add_attention("probe/long", _weights(), tokens=TOKENS, step=0)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def _whole_layer(url):
    """A request for every weight of the layer: `attention` without `head`."""
    return "/attention?" in url and "head=" not in url


def _requested(page):
    """Every URL the page asked for since it opened (the page's own record: a listener would miss the first)."""
    return page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")


def _tiles_settled(page):
    page.wait_for_function("window.__tbaTiles && window.__tbaTiles.settled", timeout=30_000)


def _pixel(page, i, j):
    """The RGB painted at the centre of weight (i, j) of the tile canvas."""
    return page.evaluate(
        """([i, j]) => { const c = document.querySelector('#matrix-tiles');
          const w = window.__tbaTiles.window(); const r = c.getBoundingClientRect();
          const sx = c.width / r.width, sy = c.height / r.height;
          const s = r.width / (w.k1 - w.k0);
          const x = Math.floor(((j - w.k0) + 0.5) * s * sx), y = Math.floor(((i - w.q0) + 0.5) * s * sy);
          return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)); }""",
        [i, j],
    )


def test_matrix_view_draws_a_tile_pyramid_at_4096_tokens(server):
    with plugin_page(server, hash_="#view=matrix") as (page, errors, _):
        wait_ready(page, "matrix")
        stats = page.evaluate("({...window.__tbaTiles})")
        # First paint: the coarsest level (4: 256 cells of 16 × 16 weights), one tile, never a whole layer.
        assert stats["requested"][0] == "4/0/0"
        _tiles_settled(page)
        level = int(page.get_attribute(".tm-root", "data-tile-level"))
        assert level < 4  # the fit view's level is finer than one tile once the canvas is a few hundred px
        # Max-pooling keeps every row's peak: the coarse cell over queries 0..15 × keys 0..15 holds query 0's.
        cell = page.evaluate("window.__tbaTiles.cellAt(0, 0)")
        assert cell["level"] <= 4 and abs(cell["code"] - round(255 * PEAK ** (1 / 3))) <= 2
        # Colour bar and axis ticks.
        assert page.locator("#matrix-tiles-colorbar .tba-tick").count() >= 3
        assert page.locator(".tm-top .hm-tick").count() >= 2 and page.locator(".tm-side .hm-tick").count() >= 2
        # Zoom in around query 2,000 and its peak key (272) to one cell per weight: finer tiles come and are painted.
        before = len(page.evaluate("window.__tbaTiles.requested"))
        assert peak_of(0, 2000) == 272
        page.evaluate("window.__tbaTiles.zoomTo({q0: 1984, q1: 2016, k0: 256, k1: 288})")
        _tiles_settled(page)
        assert page.get_attribute(".tm-root", "data-tile-level") == "0"
        new = page.evaluate("window.__tbaTiles.requested")[before:]
        assert new and all(r.startswith("0/") for r in new), new
        w = page.evaluate("window.__tbaTiles.window()")
        assert w == {"q0": 1984, "q1": 2016, "k0": 256, "k1": 288}
        # The painted pixels are the data: the peak is the top of the colour map, its neighbours the bottom.
        r, g, b = _pixel(page, 2000, 272)
        assert r > 200 and g > 200 and b < 100, (r, g, b)  # viridis' yellow end
        for i, j in [(2000, 273), (2001, 272), (1990, 260)]:
            r, g, b = _pixel(page, i, j)
            assert r < 90 and g < 40, (i, j, r, g, b)  # a weight of 2.4e-5: viridis' dark end
        assert page.evaluate("window.__tbaTiles.cellAt(2000, 272)")["level"] == 0
        # At 32 weights on ~600 px, cells are wide enough for token labels.
        assert page.get_attribute(".tm-top", "data-labels") == "1"
        assert page.locator(".tm-top .tba-token-label").first.text_content().startswith("w")
        # Tooltip: the token pair and the weight.
        box = page.locator("#matrix-tiles").bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        tip = page.text_content(".tm-root .hm-tip")
        assert f"query {w['q0']}: w{w['q0']}" in tip and "weight" in tip
        # Wheel zoom out around the pointer: a coarser level again.
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(6):
            page.mouse.wheel(0, 600)
        page.wait_for_function("document.querySelector('.tm-root').dataset.tileLevel !== '0'")
        assert errors == []


def test_matrix_view_never_asks_for_whole_layers_or_whole_heads(server):
    with plugin_page(server, hash_="#view=head") as (page, errors, _):
        urls = []
        page.on("request", lambda r: urls.append(r.url))
        open_view(page, "matrix")
        _tiles_settled(page)
        page.select_option("#matrix-head", "1")
        wait_ready(page, "matrix")
        _tiles_settled(page)
        assert not [u for u in urls if "/attention?" in u], urls  # tiles only
        assert any("tile?" in u and "head=1" in u for u in urls)
        assert errors == []


def test_head_view_at_4096_tokens_is_virtual_with_server_lines(server):
    with plugin_page(server, hash_="#view=head") as (page, errors, _):
        wait_ready(page, "head")
        page.wait_for_selector(".head-view.sparse")
        rows = page.locator(".head-view.sparse .token").count()
        assert 0 < rows < 800  # two columns of 4,096 tokens, a few screens of them in the DOM
        lines = signature(page, "#head-canvas")
        assert lines["painted"] > 1000
        # Scrolling reaches the last token.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_selector(".token.left[data-index='4095']")
        assert page.locator(".head-view.sparse .token").count() < 800
        page.wait_for_timeout(100)
        assert signature(page, "#head-canvas")["painted"] > 1000  # lines drawn down there too
        # Search jumps to a token far from the screen.
        page.evaluate("window.scrollTo(0, 0)")
        page.fill("#token-search", "w3000")
        page.press("#token-search", "Enter")
        el = page.locator(".token.left[data-index='3000']")
        el.wait_for()
        assert "match" in el.get_attribute("class")
        assert el.is_visible() and el.bounding_box()["y"] < 900
        assert page.text_content("#search-count").startswith("2 found")  # the query and the key column
        # Hover: only that token's lines (one strong line per head), drawn at once.
        before = signature(page, "#head-canvas")
        el.hover()
        page.wait_for_function("window.__tbaTimings && window.__tbaTimings.hoverMs >= 0")
        after = signature(page, "#head-canvas")
        assert after["hash"] != before["hash"] and 0 < after["painted"] < before["painted"]
        assert "hovered" in el.get_attribute("class")
        urls = _requested(page)
        assert any("/topk?" in u for u in urls)
        assert not [u for u in urls if _whole_layer(u)], urls
        assert errors == []


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_model_view_grid_of_thumbnails_opens_a_head(server, theme):
    with plugin_page(server, hash_="#view=model") as (page, errors, _):
        page.emulate_media(color_scheme=theme)
        want = "true" if theme == "dark" else "false"
        page.wait_for_function(f"document.body.classList.contains('tba-dark') === {want}")
        wait_ready(page, "model")
        page.wait_for_selector("#model-thumbs[data-done='1']")
        thumbs = page.locator(".mv-lod-thumb")
        assert thumbs.count() == HEADS
        assert page.locator("#model-thumbs .mv-row-label").first.text_content() == "Layer 0"
        assert page.locator("#model-thumbs-colorbar .tba-tick").count() >= 3
        # Each thumbnail shows its head's peaks: a bright line of slope 37 (wrapping), on a dark ground.
        sig = signature(page, ".mv-lod-thumb")
        assert sig["painted"] == sig["size"] == HEADS * 64 * 64
        bright = page.evaluate("""() => { const c = document.querySelector('.mv-lod-thumb');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] > 200) n++;
            return n / (d.length / 4); }""")
        assert 0.05 < bright < 0.95, bright
        result = page.evaluate(CONTRAST_JS)
        assert result["bad"] == [], result["bad"]
        if theme == "dark":  # the thumbnails themselves are data (viridis' yellow peaks), not a background
            assert [c for c in page.evaluate(LIGHT_CANVAS_JS) if c[0] != "mv-lod-thumb"] == []
        # Click the second head: the matrix view opens at it.
        thumbs.nth(1).click()
        wait_ready(page, "matrix")
        assert page.input_value("#matrix-head") == "1"
        page.wait_for_selector(".tm-root[data-tiles-settled='1']")
        assert errors == []
