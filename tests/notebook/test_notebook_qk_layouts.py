"""The Q/K embedding tab in notebook outputs: PCA layouts computed at build time, the same as the plugin's routes
answer, bounded by the byte cap, and painted in Chromium with every network request aborted."""

import json

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention import notebook as tba
from tb_attention.format import codec
from tests.conftest import Loaded, _python_loader
from tests.notebook.util import nth, offline_page, payload, response, wait_all_ready

L, H, HKV, N, D = 2, 4, 2, 9, 8
STEPS = (0, 10, 20)


def _logdir(tmp_path, n=N, steps=STEPS):
    """Run `a`: probe `p` (causal, GQA, q/k logged) at `steps`, each step new vectors."""
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "a")) as w:
        for step in steps:
            q = rng.normal(size=(L, H, n, D)).astype(np.float32) + 1.0
            k = rng.normal(size=(L, HKV, n, D)).astype(np.float32)
            logits = np.einsum("lhqd,lhkd->lhqk", q, np.repeat(k, H // HKV, axis=1)) / np.sqrt(D)
            logits = np.where(np.tril(np.ones((n, n), bool)), logits, -np.inf)
            a = np.exp(logits - logits.max(-1, keepdims=True))
            a = (a / a.sum(-1, keepdims=True)).astype(np.float32)
            w.add_attention("p", a, tokens=[f"t{i}" for i in range(n)], step=step, queries=q, keys=k)
    return tmp_path


def _xy(body):
    meta, arrays = codec.unpack(body)
    x0, y0, x1, y1 = meta["bbox"]
    return meta, arrays, arrays["xy"].astype(np.float64) * [x1 - x0, y1 - y0] + [x0, y0]


def test_layouts_are_what_the_plugin_serves(tmp_path):
    logdir = _logdir(tmp_path)
    header, responses = payload(tba.show(logdir).html())
    assert "embedding" not in header["options"]["hide"]
    dp, _ = _python_loader(logdir)
    plugin = Loaded(dp)
    try:
        params = {"run": "a", "tag": "p", "method": "pca", "translate": "1", "scale": "1"}
        info = json.loads(response(responses, "embedding_info", run="a", tag="p"))
        served = plugin.get("embedding_info", run="a", tag="p").get_json()
        assert {k: v for k, v in info.items() if k not in ("methods", "only")} == {
            k: v for k, v in served.items() if k != "methods"
        }
        assert info["methods"]["pca"] and not info["methods"]["faithful"] and info["only"]["method"] == "pca"
        for step in STEPS:
            ours = codec.unpack(response(responses, "embedding_matrix", step=step, **params))
            theirs = codec.unpack(plugin.get("embedding_matrix", step=step, **params).get_data())
            assert ours[0] == theirs[0]
            np.testing.assert_array_equal(ours[1]["xy"], theirs[1]["xy"])  # aligned step to step as the server does
            np.testing.assert_allclose(ours[1]["faithfulness"], theirs[1]["faithfulness"], atol=1e-6)
            for layer in range(L):
                for head in range(H):
                    meta, arrays, xy = _xy(
                        response(responses, "embedding", step=step, layer=layer, head=head, **params)
                    )
                    resp = plugin.get("embedding", step=step, layer=layer, head=head, **params)
                    s_meta, s_arrays, s_xy = _xy(resp.get_data())
                    np.testing.assert_allclose(xy, s_xy, atol=1e-6)
                    np.testing.assert_array_equal(arrays["norm"], s_arrays["norm"])
                    assert meta.keys() == s_meta.keys() and meta["kv_head"] == head // 2
                    for key in ("faithfulness", "original", "mixing", "aligned", "num_queries", "num_keys"):
                        assert meta[key] == pytest.approx(s_meta[key], abs=1e-6), key
    finally:
        plugin.plugin._embedding.close()


def test_over_the_cap_the_layouts_of_the_last_step_stay_and_the_output_says_so(tmp_path):
    logdir = _logdir(tmp_path, n=40)
    full = tba.show(logdir)
    _, responses = payload(full.html())
    layouts = sum(len(b) for (route, _), b in responses.items() if route.startswith("embedding"))
    # A cap where every step's layouts take more than their quarter of it, but the last step's do not.
    cap = int(full.nbytes - layouts * 4 / 3 + layouts * 4 / 3 * 2)
    view = tba.show(logdir, max_bytes=cap)
    header, responses = payload(view.html())
    steps = {dict(p)["step"] for route, p in responses if route == "embedding_matrix"}
    assert steps == {"20"}
    assert any("last step only" in n for n in view.notes)
    assert "this step are not in this notebook output" in header["options"]["missing"]["embedding_matrix"]
    # A cap too small for any layouts beside the attention: the tab is hidden, and the output says why.
    bare = tba.show(logdir, max_bytes=int(full.nbytes - layouts * 4 / 3 + 2000))
    header, responses = payload(bare.html())
    assert "embedding" in header["options"]["hide"] and not any(r.startswith("embedding") for r, _ in responses)
    assert any("Q/K embedding left out" in n for n in bare.notes)


def test_no_qk_no_tab(tmp_path):
    attn = [np.full((1, 2, 4, 4), 0.25, np.float32)]
    header, responses = payload(tba.head_view(attn, list("abcd")).html())
    assert "embedding" in header["options"]["hide"] and not any(r.startswith("embedding") for r, _ in responses)


def test_the_qk_tab_paints_offline(tmp_path):
    view = tba.show(_logdir(tmp_path))
    path = tmp_path / "page.html"
    path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{view.html()}</body></html>')
    root = "[data-view-root=embedding]"
    body = "document.querySelector('.tb-attention').shadowRoot.querySelector('body')"
    host = "document.querySelector('.tb-attention')"
    with offline_page() as (page, errors, requests):
        page.goto(path.as_uri())
        wait_all_ready(page, 1)
        tab = nth(page, 0, ".tba-tab[data-view=embedding]")
        assert tab.is_visible()
        tab.click()
        page.wait_for_function(f"{body}.dataset.paintedView === 'embedding' && {body}.dataset.state === 'ready'")
        nth(page, 0, ".emb-view[data-emb-method=pca]").wait_for()
        assert nth(page, 0, f"{root} .emb-cell").count() == L * H
        painted = page.evaluate(
            f"""() => [...{host}.shadowRoot.querySelectorAll('.emb-cell canvas')].map((c) => {{
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++; return n; }})"""
        )
        assert len(painted) == L * H and min(painted) > 0  # every head's scatter has points
        assert nth(page, 0, ".emb-cell-score").first.text_content().startswith("ρ 0.")  # scores embedded too
        assert nth(page, 0, ".emb-method").is_disabled() is False and nth(page, 0, ".emb-translate").is_disabled()
        # One head large: its points are drawn, a clicked query draws its lines (attention from the payload).
        nth(page, 0, ".emb-cell[data-layer='1'][data-head='3']").click()
        nth(page, 0, ".emb-view[data-emb-mode=single]").wait_for()
        page.wait_for_function(f"{host}.__tbaEmb.screenOf(0) !== null")
        x, y = page.evaluate(f"{host}.__tbaEmb.screenOf(4)")
        page.mouse.click(x, y)
        page.wait_for_function(f"Number({host}.shadowRoot.querySelector('.emb-view').dataset.embLines) > 0")
        # Another step: its own (aligned) layout is embedded.
        page.evaluate(f"{host}.__tba.select({{step: 0}})")
        page.wait_for_function(f"{body}.dataset.paintedStep === '0' && {body}.dataset.state === 'ready'")
        assert nth(page, 0, ".emb-note").is_hidden()
        assert requests == [] and errors == []
