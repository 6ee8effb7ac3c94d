"""Token strings are untrusted: HTML/JS payloads, bidi overrides and zero-width characters render as inert text."""

import numpy as np

from tb_attention import AttentionWriter
from tests.browser_util import plugin_page
from tests.conftest import softmax_attention

HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
    "javascript:alert(4)",
    "\u202egnp.exe",  # right-to-left override
    "a\u200bb\u200cc\u200dd\ufeff",  # zero-width characters
    "&lt;b&gt;escaped&lt;/b&gt;",
    "{{constructor.constructor('window.__pwned=5')()}}",
    "after",
]


def test_hostile_tokens_render_as_inert_isolated_text(tmp_path, tensorboard_server):
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", softmax_attention(rng, 1, 2, len(HOSTILE)), tokens=HOSTILE, step=0)
    base = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(base) as (page, errors, dialogs):
        texts = page.eval_on_selector_all(".token.left", "els => els.map(e => e.textContent)")
        assert texts == HOSTILE
        for i in range(len(HOSTILE)):  # hovering runs the hover code path over every hostile label
            page.hover(f".token.left[data-index='{i}']")
        page.wait_for_timeout(200)
        assert page.evaluate("window.__pwned") is None
        assert page.locator(".token img, .token script, .token svg").count() == 0
        assert page.eval_on_selector(".token.left", "e => getComputedStyle(e).unicodeBidi") == "isolate"
        # The bidi override stays inside its own token: the next token's box is laid out left-to-right as usual.
        assert page.eval_on_selector(".token.left[data-index='8']", "e => e.textContent") == "after"
        assert dialogs == [] and errors == []
