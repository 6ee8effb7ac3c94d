"""Chromium tests of the neuron view at thousands of tokens (issue 12): only the rows near the screen exist (DOM
rows and a canvas window), scrolling reaches the last token, search jumps to a token off screen, and the softmax it
shows for a key is the stored or rebuilt weight within the documented bounds. Probes: 4,096 tokens with stored
weights and q/k (1 layer, 2 heads), and a q/k-only layer with a relative position bias at 8,448 tokens, where one
head is past 2^26 weights (the server answers 413) and the view rebuilds the query's row from q/k itself."""

import statistics

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.analysis import recompute
from tests.browser_util import plugin_page, signature, wait_ready
from tests.conftest import start_tensorboard

N = 4096
N_QK = 8448  # 8,448² > 2^26: no one-head weights from the server
HEADS = 2
D = 16
ROOT = "[data-view-root='neuron']"
NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def _qk(rng, n):
    q = (rng.normal(size=(HEADS, n, D)) * 1.5).astype(np.float16)
    k = (rng.normal(size=(HEADS, n, D)) * 1.5).astype(np.float16)
    return q, k


def _layer(bias="none"):
    return {"index": 0, "scaling": D**-0.5, "mask": "causal", "offset": 0, "bias": bias}


def _weights(q, k):
    """Causal softmax of the stored fp16 q/k: the weights the 4,096-token probe stores."""
    spec = recompute.Spec.from_layer(_layer(), HEADS, HEADS)
    return np.stack([recompute.head_weights(spec, q[h], k[h], h) for h in range(HEADS)])[None]


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    root = tmp_path_factory.mktemp("neuron_long")
    rng = np.random.default_rng(12)
    q, k = _qk(rng, N)
    qq, kk = _qk(rng, N_QK)
    bias = (rng.normal(size=(HEADS, 2 * N_QK - 1)) * 0.5).astype(np.float32)
    with AttentionWriter(str(root / "run")) as w:
        w.add_attention("probe/long", _weights(q, k), tokens=[f"w{i}" for i in range(N)], step=0, queries=[q], keys=[k])
        w.add_attention(
            "probe/qk",
            None,
            tokens=[f"t{i}" for i in range(N_QK)],
            step=0,
            queries=[qq],
            keys=[kk],
            layers=[_layer(bias)],
        )
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url, {"long": (q, k, None), "qk": (qq, kk, bias)}
    proc.kill()
    proc.wait()


WAIT_PAINTED = (
    """async (view) => { const t0 = performance.now();
  while (!(document.body.dataset.state === 'ready' && document.body.dataset.paintedView === view)) {
    if (performance.now() - t0 > 60000) return null;
    await new Promise(r => setTimeout(r, 2)); }
  await """
    + NEXT_FRAME
    + "; return performance.now() - t0; }"
)


def _tab_click_ms(page):
    """Tab click → the neuron view painted (+ one frame), from the matrix view of the same probe."""
    page.evaluate("window.__tba.select({view: 'matrix'})")
    assert page.evaluate(WAIT_PAINTED, "matrix") is not None
    click = "document.querySelector(\".tba-tab[data-view='neuron']\").click()"
    return page.evaluate(f"async () => {{ {click}; return await ({WAIT_PAINTED})('neuron'); }}")


def _hover_ms(page, first):
    """Hover query tokens first..first+4: the median of the view's own redraw time (`data-query-ms`) and of
    mouseover → two frames later (a shared machine's noise stays out of the median)."""
    times = page.evaluate(
        "async (first) => { const out = []; for (let i = first; i < first + 5; i++) {"
        " const el = document.querySelector(`.nv-q .token[data-index='${i}']`); const t = performance.now();"
        " el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); await " + NEXT_FRAME + ";"
        " out.push([+document.querySelector(\"[data-view-root='neuron']\").dataset.queryMs, performance.now() - t]); }"
        " return out; }",
        first,
    )
    assert page.get_attribute(ROOT, "data-query") == str(first + 4)
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def _shown_softmax(page, j):
    """The softmax the key token's tooltip shows for key j (computed on hover, full precision)."""
    _scroll_to(page, j)  # the key's row exists only near the screen
    page.locator(f".nv-k .token[data-index='{j}']").dispatch_event("mouseover")
    title = page.get_attribute(f".nv-k .token[data-index='{j}']", "title")
    line = next(t for t in title.split("\n") if t.startswith("softmax (recomputed) = "))
    return float(line.split("= ")[1])


def _scroll_to(page, index):
    y = page.evaluate(
        "(i) => { const b = document.querySelector('.nv-body'); const r = b.getBoundingClientRect();"
        " const row = parseFloat(getComputedStyle(b).getPropertyValue('--row-h'));"
        " return window.scrollY + r.top + 34 + i * row - 200; }",
        index,
    )
    page.evaluate("(y) => window.scrollTo(0, y)", y)
    page.wait_for_selector(f".nv-q .token[data-index='{index}']")
    page.evaluate(NEXT_FRAME)


def _rows(page):
    return page.locator(".nv-body .token").count()


def test_neuron_view_at_4096_tokens_draws_only_rows_on_screen(probes):
    url, data = probes
    q, k, _ = data["long"]
    with plugin_page(url, hash_="#view=matrix&run=run&tag=probe%2Flong") as (page, errors, _):
        wait_ready(page, "matrix")
        ms = _tab_click_ms(page)
        print(f"neuron view tab click -> painted at {N} tokens: {ms:.0f} ms")
        assert ms is not None and ms < 5000  # target 1 s (issue 12); a loose bound on a shared 2-core machine
        assert 0 < _rows(page) < 800  # two columns of 4,096 tokens: a few screens of rows
        canvas = page.locator(".nv-body canvas")
        assert canvas.count() == 1
        box = canvas.bounding_box()
        assert box["height"] < 4 * 900  # a window of rows, not 4,096 of them
        # Full pixel density: the canvas is not shrunk to fit 32,767 device pixels.
        assert page.evaluate("(c) => c.height / c.getBoundingClientRect().height", canvas.element_handle()) >= 1
        assert signature(page, ".nv-body canvas")["painted"] > 10_000
        # The softmax agrees with the stored weights within storage precision (the view's own verdict).
        assert page.get_attribute(ROOT, "data-recompute") == "agrees"
        # Hover a query: the view's redraw and the next frame are quick.
        view_ms, frame_ms = _hover_ms(page, 20)
        print(f"hover: view {view_ms:.1f} ms, to next frame {frame_ms:.1f} ms")
        assert view_ms < 50 and frame_ms < 500
        # Scroll to the last token: rows exist there, still few; lock it and read a key's softmax.
        _scroll_to(page, N - 1)
        assert _rows(page) < 800
        assert signature(page, ".nv-body canvas")["painted"] > 10_000  # strips drawn down there too
        page.click(f".nv-q .token[data-index='{N - 1}']")
        assert page.get_attribute(ROOT, "data-locked") == "true"
        assert page.get_attribute(ROOT, "data-recompute") == "agrees"
        w = recompute.head_weights(recompute.Spec.from_layer(_layer(), HEADS, HEADS), q[0], k[0], 0, rows=[N - 1])[0]
        m = float(w.max())
        for j in (N - 1, N - 2, int(np.argmax(w))):
            bound = 0.00606 * m ** (1 / 3) * float(w[j]) ** (2 / 3) + 1.23e-5 * m  # cbrt8 (docs/format.md)
            assert abs(_shown_softmax(page, j) - w[j]) <= bound + 1e-3 * w[j] + 1e-6, j
        # Search jumps to a token far from the screen.
        page.evaluate("window.scrollTo(0, 0)")
        page.fill("#token-search", "w3000")
        page.press("#token-search", "Enter")
        el = page.locator(".nv-q .token[data-index='3000']")
        el.wait_for()
        assert "match" in el.get_attribute("class")
        assert el.is_visible() and 0 <= el.bounding_box()["y"] < 900
        assert page.text_content("#search-count").startswith("2 found")  # the query and the key column
        assert _rows(page) < 800
        urls = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
        assert not [u for u in urls if "/attention?" in u and "head=" not in u], urls  # never a whole layer
        assert errors == []


def test_neuron_view_rebuilds_a_qk_row_past_the_one_head_limit(probes):
    url, data = probes
    q, k, bias = data["qk"]
    with plugin_page(url, hash_="#view=matrix&run=run&tag=probe%2Fqk") as (page, errors, _):
        wait_ready(page, "matrix")
        ms = _tab_click_ms(page)
        print(f"neuron view tab click -> painted at {N_QK} tokens (q/k only): {ms:.0f} ms")
        assert ms is not None and ms < 5000
        assert 0 < _rows(page) < 800
        assert page.get_attribute(ROOT, "data-recompute") == "rebuilt"
        assert "not loaded" in page.text_content(".nv-verdict")
        assert "relative position bias" in page.text_content(".nv-info")
        view_ms, _ = _hover_ms(page, 30)
        print(f"hover at {N_QK} tokens: view {view_ms:.1f} ms")
        assert view_ms < 100
        _scroll_to(page, N_QK - 1)
        page.click(f".nv-q .token[data-index='{N_QK - 1}']")
        spec = recompute.Spec.from_layer(_layer("relative"), HEADS, HEADS, bias=bias)
        w = recompute.head_weights(spec, q[0], k[0], 0, rows=[N_QK - 1])[0]
        m = float(w.max())
        for j in (N_QK - 1, N_QK - 5, int(np.argmax(w))):
            # The recompute bound (docs/format.md): 1 % of the row maximum, and the tooltip's 4 digits.
            assert abs(_shown_softmax(page, j) - w[j]) <= 0.01 * m + 1e-3 * w[j], j
        urls = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
        assert not [u for u in urls if "/attention?" in u], urls  # the server would answer 413
        assert any("/qk?" in u and "head=0" in u for u in urls)
        assert errors == []
