"""Chromium: the Q/K embedding view paints every head's scatter, opens a head, and a clicked query draws lines."""

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
