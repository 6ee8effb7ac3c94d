"""Chromium: the Q/K embedding view paints every head's scatter, opens a head, and a clicked query draws lines."""

import re

import numpy as np

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page, signature

L, H, D = 2, 3, 8
LENGTHS = [7, 9, 6, 8, 7]


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def test_embedding_matrix_and_single_head_views(tmp_path, tensorboard_server):
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "exp")) as w:
        for step in (0, 10):
            qs = [rng.normal(size=(L, H, n, D)).astype(np.float32) for n in LENGTHS]
            ks = [rng.normal(size=(L, H, n, D)).astype(np.float32) for n in LENGTHS]
            attn = [_softmax(np.einsum("lhqd,lhkd->lhqk", q, k) / np.sqrt(D)) for q, k in zip(qs, ks)]
            tokens = [[f"t{p}_{i}" for i in range(n)] for p, n in enumerate(LENGTHS)]
            tokens[0][1] = "<b>needle</b>"
            w.add_attention_batch("sents", attn, tokens=tokens, step=step, queries=qs, keys=ks)
    url = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(url) as (page, errors, dialogs):
        open_view(page, "embedding")
        root = "[data-view-root='embedding']"
        assert page.locator(f"{root} .emb-cell").count() == L * H
        # PCA paints first; the default faithful layout replaces it once the server has computed it.
        page.wait_for_selector(
            f"{root} .emb-view[data-emb-method='faithful'], .emb-view[data-emb-method='faithful']", timeout=60_000
        )
        sig = signature(page, ".emb-cell canvas")
        assert sig["painted"] > L * H * 50
        assert page.locator(".emb-cell-score").first.text_content().startswith("ρ ")
        # Open layer 1 head 2.
        page.click(".emb-cell[data-layer='1'][data-head='2']")
        page.wait_for_selector(".emb-view[data-emb-mode='single']")
        page.wait_for_function(
            "document.querySelector('.emb-view').dataset.embFaithfulness !== undefined && window.__tbaEmb.screenOf(0) !== null"
        )
        page.wait_for_selector(".emb-view[data-emb-mode='single'][data-emb-method='faithful']", timeout=60_000)
        before = signature(page, ".emb-canvas")
        assert before["painted"] > 200
        assert "faithfulness" in page.text_content(".emb-badge")
        # Hover a query: tooltip with its token; click it: lines to its top keys.
        x, y = page.evaluate("window.__tbaEmb.screenOf(1)")
        page.mouse.move(x, y)
        page.wait_for_selector(".emb-tip", state="visible")
        page.mouse.click(x, y)
        page.wait_for_function("Number(document.querySelector('.emb-view').dataset.embLines) > 0")
        after = signature(page, ".emb-canvas")
        assert after["hash"] != before["hash"]
        assert "<b>needle</b>" in page.text_content(".emb-context")  # tokens are text, never HTML
        # The step slider in the single view: the head is redrawn at the other step (animated, same points).
        page.evaluate("__tba.select({step: 0})")
        page.wait_for_selector("body[data-painted-step='0'][data-state=ready]")
        page.wait_for_function("!document.querySelector('.emb-status').textContent")
        page.wait_for_timeout(500)  # the 350 ms animation
        assert signature(page, ".emb-canvas")["hash"] != after["hash"]
        # Token search highlights matches.
        page.fill(".emb-search", "needle")
        assert page.get_attribute(".emb-view", "data-emb-matches") == "2"  # its query and its key
        # The back button returns to the matrix.
        page.click(".emb-back")
        page.wait_for_selector(".emb-view[data-emb-mode='matrix']")
        assert errors == [] and dialogs == []


RECORD_LAYERS_JS = """() => {
  // Every value data-emb-layers-painted takes (a record's old value, then the last one) and, when the shell says
  // the tab is ready, how many layers were on screen.
  window.__layers = [];
  window.__readyAt = null;
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.attributeName === 'data-emb-layers-painted') window.__layers.push(r.oldValue);
      else if (document.body.dataset.state === 'ready' && document.body.dataset.paintedView === 'embedding'
               && window.__readyAt === null)
        window.__readyAt = document.querySelector('.emb-view').dataset.embLayersPainted;
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeOldValue: true,
                             attributeFilter: ['data-emb-layers-painted', 'data-state']});
}"""


def test_embedding_matrix_of_1024_heads_paints_layer_by_layer(tmp_path, tensorboard_server):
    layers, heads, d, lengths = 32, 32, 4, [5, 6]
    rng = np.random.default_rng(1)
    qs = [rng.normal(size=(layers, heads, n, d)).astype(np.float32) for n in lengths]
    ks = [rng.normal(size=(layers, heads, n, d)).astype(np.float32) for n in lengths]
    attn = [_softmax(np.einsum("lhqd,lhkd->lhqk", q, k)) for q, k in zip(qs, ks)]
    with AttentionWriter(str(tmp_path / "big")) as w:
        tokens = [[f"t{i}" for i in range(n)] for n in lengths]
        w.add_attention_batch("sents", attn, tokens=tokens, step=0, queries=qs, keys=ks)
    url = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(url) as (page, errors, dialogs):
        asked = []
        page.on("request", lambda r: asked.append(r.url) if "embedding_matrix" in r.url else None)
        page.evaluate(RECORD_LAYERS_JS)
        open_view(page, "embedding")
        page.wait_for_function("window.__readyAt !== null")
        # The tab's first paint is one layer (the next ones are still being fetched, at most 3 at a time).
        assert 1 <= int(page.evaluate("window.__readyAt")) <= 3
        view = ".emb-view[data-emb-part-method='pca']"
        page.wait_for_selector(f"{view}[data-emb-layers-painted='{layers}']", timeout=60_000)
        seen = page.evaluate("window.__layers")[1:] + [str(layers)]  # old values: the first is the attribute unset
        assert seen[: layers + 1] == [str(n) for n in range(layers + 1)]  # 0, then one more layer per answer
        pca = [u for u in asked if "method=pca" in u]
        assert len(pca) == layers and sorted(int(re.search(r"layers=(\d+)", u).group(1)) for u in pca) == list(
            range(layers)
        )
        assert page.locator(".emb-cell").count() == layers * heads
        assert signature(page, ".emb-cell canvas")["painted"] > layers * heads * 20
        assert page.locator(".emb-cell[data-layer='31'][data-head='31'] .emb-cell-score").text_content().startswith("ρ")
        assert errors == [] and dialogs == []
