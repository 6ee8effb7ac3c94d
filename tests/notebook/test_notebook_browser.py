"""Notebook fragments in Chromium with every network request aborted: they paint, respond to hover, stay apart from
each other, keep hostile tokens as text and follow the notebook's theme."""

import numpy as np

from tb_attention import notebook as tba
from tb_attention.notebook import fragment
from tests.conftest import softmax_attention
from tests.notebook.util import nth, offline_page, signature, states, wait_all_ready


def _page(tmp_path, *views, body_attrs=""):
    path = tmp_path / "page.html"
    parts = "\n<hr>\n".join(v.html() for v in views)
    path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body {body_attrs}>{parts}</body></html>')
    return path.as_uri()


def _attn(seed, layers=3, heads=4, n=12):
    return [a[None] for a in softmax_attention(np.random.default_rng(seed), layers, heads, n)]


def test_two_views_in_one_page_paint_offline_and_do_not_interfere(tmp_path):
    head = tba.head_view(_attn(1), [f"a{i}" for i in range(12)], layer=1)
    model = tba.model_view(_attn(2, n=9), [f"b{i}" for i in range(9)])
    with offline_page() as (page, errors, requests):
        baseline = tmp_path / "empty.html"
        baseline.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><hr></body></html>')
        page.goto(baseline.as_uri())
        globals_before = set(page.evaluate("() => Object.keys(window)"))
        page.goto(_page(tmp_path, head, model))
        wait_all_ready(page, 2)
        s = states(page)
        assert [x["view"] for x in s] == ["head", "model"] and s[0]["layer"] == "1"
        assert requests == [] and errors == []
        # No global names: the outputs keep their hooks on their own elements.
        assert set(page.evaluate("() => Object.keys(window)")) == globals_before
        # Both outputs have a #layer-select of their own, in their own shadow root.
        assert page.evaluate("() => document.querySelectorAll('#layer-select').length") == 0
        assert nth(page, 0, "#layer-select").count() == 1 and nth(page, 1, "#layer-select").count() == 1
        assert nth(page, 0, "[data-view-root=head] .token.left").first.text_content() == "a0"

        other = signature(page, 1)
        before = signature(page, 0, "[data-view-root=head] canvas")
        nth(page, 0, "[data-view-root=head] .token.left[data-index='3']").hover()
        page.wait_for_timeout(150)
        hovered = signature(page, 0, "[data-view-root=head] canvas")
        assert hovered["hash"] != before["hash"] and hovered["painted"] < before["painted"]  # one token's lines
        assert signature(page, 1) == other  # the model view did not move

        # A layer change in the first output is that output's alone.
        nth(page, 0, "#layer-select").select_option("2")
        page.wait_for_function(
            "() => document.querySelectorAll('.tb-attention')[0].shadowRoot.querySelector('body')"
            ".dataset.paintedLayer === '2'"
        )
        assert states(page)[1]["view"] == "model" and signature(page, 1) == other
        # Keys reach the view that has focus only (the app listens on its own body, not the document).
        nth(page, 0, "[data-view-root=head] .token.left[data-index='0']").click()
        page.keyboard.press("ArrowUp")
        page.wait_for_function(
            "() => document.querySelectorAll('.tb-attention')[0].shadowRoot.querySelector('body')"
            ".dataset.paintedLayer === '1'"
        )
        assert states(page)[1]["layer"] == "0"


def test_hostile_tokens_render_as_text(tmp_path):
    tokens = ["<img src=x onerror=alert(1)>", "</script><b>x</b>", "<!--", "&lt;", "a"]
    view = tba.head_view(_attn(3, n=5), tokens)
    with offline_page() as (page, errors, requests):
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(_page(tmp_path, view))
        wait_all_ready(page, 1)
        shown = nth(page, 0, "[data-view-root=head] .token.left").all_text_contents()
        assert shown == tokens
        assert nth(page, 0, "img").count() == 0 and nth(page, 0, "b").count() == 0
        assert dialogs == [] and requests == [] and errors == []


def test_views_follow_the_notebook_theme_unless_told(tmp_path):
    view = tba.head_view(_attn(4), [str(i) for i in range(12)])
    forced = tba.model_view(_attn(5), [str(i) for i in range(12)], display_mode="light")
    with offline_page() as (page, errors, _):
        # JupyterLab's marker of a dark theme on <body>.
        page.goto(_page(tmp_path, view, forced, body_attrs='data-jp-theme-light="false"'))
        wait_all_ready(page, 2)
        assert [s["dark"] for s in states(page)] == [True, False]
        page.evaluate("() => document.body.setAttribute('data-jp-theme-light', 'true')")
        page.wait_for_function(
            "() => !document.querySelector('.tb-attention').shadowRoot.querySelector('body')"
            ".classList.contains('tba-dark')"
        )
        page.evaluate("() => document.body.setAttribute('class', 'vscode-dark')")
        page.evaluate("() => document.body.removeAttribute('data-jp-theme-light')")
        page.wait_for_function(
            "() => document.querySelector('.tb-attention').shadowRoot.querySelector('body')"
            ".classList.contains('tba-dark')"
        )
        assert errors == []


def test_a_2048_token_probe_displays_at_its_level_of_detail(tmp_path):
    n = 2048
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((2, n, n), dtype=np.float32) * 4
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    view = tba.head_view([w[None]], [f"t{i}" for i in range(n)], max_bytes=3 << 20)
    assert view.nbytes <= 3 << 20
    with offline_page() as (page, errors, requests):
        page.goto(_page(tmp_path, view))
        wait_all_ready(page, 1, timeout=120_000)
        assert "keys kept" in nth(page, 0, ".tba-nb-notes").text_content()
        assert signature(page, 0, "[data-view-root=head] canvas")["painted"] > 0
        nth(page, 0, ".tba-tab[data-view=matrix]").click()
        page.wait_for_function(
            "() => document.querySelector('.tb-attention').shadowRoot.querySelector('body')"
            ".dataset.paintedView === 'matrix'",
            timeout=60_000,
        )
        assert requests == [] and errors == []


def test_the_export_button_of_a_notebook_view_writes_a_working_snapshot(tmp_path):
    view = tba.head_view(_attn(7), [f"c{i}" for i in range(12)])
    with offline_page() as (page, errors, _):
        page.goto(_page(tmp_path, view))
        wait_all_ready(page, 1)
        with page.expect_download() as info:
            nth(page, 0, "#export-html").click()
        saved = tmp_path / "snapshot.html"
        info.value.save_as(saved)
        page.goto(saved.as_uri())  # the TensorBoard snapshot format: the app on the page itself, no shadow root
        page.wait_for_selector("body[data-state=ready]", timeout=30_000)
        assert page.locator("[data-view-root=head] .token.left").first.text_content() == "c0"
        assert errors == [] and fragment.element_name() not in saved.read_text()


def test_bertviz_layer_and_heads_are_the_initial_selection(tmp_path):
    view = tba.head_view(_attn(8, layers=3, heads=4), [f"h{i}" for i in range(12)], layer=2, heads=[1, 3])
    with offline_page() as (page, errors, _):
        page.goto(_page(tmp_path, view))
        wait_all_ready(page, 1)
        assert states(page)[0]["layer"] == "2"
        off = "(el) => [...el.querySelectorAll('.head-toggle')].map((b) => !b.classList.contains('off'))"
        page.wait_for_function(
            "() => { const r = document.querySelector('.tb-attention').shadowRoot;"
            " const on = [...r.querySelectorAll('.head-toggle')].map((b) => !b.classList.contains('off'));"
            " return JSON.stringify(on) === JSON.stringify([false, true, false, true]); }",
            timeout=10_000,
        )
        assert nth(page, 0, "#head-toggles").evaluate(off) == [False, True, False, True]
        assert errors == []
