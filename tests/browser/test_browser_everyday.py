"""Chromium tests of the everyday features: export (PNG, SVG, npz, offline HTML snapshot), special tokens,
token search, sentence A/B filter, encoder/decoder/cross switch, dark mode, keyboard."""

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.browser_util import browser, open_view, plugin_page, signature, wait_ready
from tests.conftest import softmax_attention, start_tensorboard

XSS = "<img src=x onerror=alert(1)>"
TOKENS = ["[CLS]", "the", "cat", XSS, "sat", "[SEP]", "it", "was", "warm", "[SEP]"]
SEGMENTS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
L, H, D = 2, 3, 4


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("everyday")
    rng = np.random.default_rng(3)
    T = len(TOKENS)
    attn = {}
    with AttentionWriter(str(root / "a")) as w:
        for step in (0, 10):
            attn[step] = softmax_attention(rng, L, H, T)
            q = rng.normal(size=(L, H, T, D)).astype(np.float32)
            k = rng.normal(size=(L, H, T, D)).astype(np.float32)
            w.add_attention("probe/p", attn[step], tokens=TOKENS, step=step, queries=q, keys=k, segments=SEGMENTS)
    with AttentionWriter(str(root / "b")) as w:  # an encoder-decoder probe: three tags
        enc, dec = ["x", "y", "z", "</s>"], ["<pad>", "u", "v"]
        w.add_attention("t5/encoder", softmax_attention(rng, 1, 2, 4), tokens=enc, step=0)
        w.add_attention("t5/decoder", softmax_attention(rng, 1, 2, 3), tokens=dec, step=0)
        w.add_attention("t5/cross", softmax_attention(rng, 1, 2, 3, 4), tokens=dec, key_tokens=enc, step=0)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url, attn
    proc.kill()
    proc.wait()


def _download(page, selector):
    with page.expect_download() as info:
        page.click(selector)
    return info.value.path().read_bytes()


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_export_png_svg_npz(logged):
    url, attn = logged
    with plugin_page(url, downloads=True) as (page, errors, dialogs):
        for view in ("head", "model", "neuron", "matrix", "diff"):
            open_view(page, view)
            png = _download(page, "#export-png")
            w, h = _png_size(png)
            assert w > 200 and h > 100, (view, w, h)
            from PIL import Image

            img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, view  # a picture, not a blank page
            svg = _download(page, "#export-svg")
            tree = ET.fromstring(svg)
            tags = {el.tag.split("}")[-1] for el in tree.iter()}
            assert "script" not in tags and "img" not in tags and "foreignObject" not in tags
            # Line views export vector lines and small heatmaps vector cells (for papers); thumbnails and the neuron
            # view's strips embed their bitmap.
            vector = {"head": "line", "matrix": "rect", "diff": "rect"}.get(view, "image")
            assert {"text", vector} <= tags, (view, tags)
            if view == "head":
                assert len([el for el in tree.iter() if el.tag.endswith("line")]) > 100
            texts = [el.text for el in tree.iter() if el.tag.endswith("text")]
            if view in ("head", "neuron"):
                assert XSS in texts  # the token is text, escaped by the serialiser
        npz = np.load(io.BytesIO(_download(page, "#export-npz")))
        assert list(npz["tokens"]) == TOKENS and int(npz["step"][0]) == 10
        assert npz["attention"].shape == (L, H, len(TOKENS), len(TOKENS))
        assert np.all(np.abs(npz["attention"] - attn[10]) <= codec.cbrt8_error_bound(attn[10]) + 1e-6)
        assert npz["queries"].shape == (L, H, len(TOKENS), D) and npz["keys"].shape == (L, H, len(TOKENS), D)
        assert dialogs == [] and errors == []


def test_offline_html_snapshot(logged, tmp_path):
    url, _ = logged
    with plugin_page(url, downloads=True) as (page, errors, dialogs):
        page.select_option("#layer-select", "1")
        wait_ready(page)
        open_view(page, "model")
        html = _download(page, "#export-html")
    assert b"<img src=x" not in html  # embedded data is JSON with "<" escaped, or base64
    path = tmp_path / "snapshot.html"
    path.write_bytes(html)
    with browser() as opener:
        page = opener.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-state=ready][data-painted-view='model']", timeout=30_000)
        assert signature(page, ".mv-thumb canvas")["painted"] > 500
        open_view(page, "head")
        assert page.evaluate("document.body.dataset.paintedLayer") == "1"
        assert page.locator(".token.left").count() == len(TOKENS)
        open_view(page, "matrix")  # heads are sliced from the embedded layers
        open_view(page, "neuron")
        assert signature(page, ".nv-body canvas")["painted"] > 500
        assert [u for u in requests if not u.startswith(("file:", "blob:", "data:"))] == []
        assert page.locator("img").count() == 0 and dialogs == []


def test_special_tokens_search_segments_keyboard(logged):
    url, _ = logged
    with plugin_page(url) as (page, errors, dialogs):
        T = len(TOKENS)
        assert page.locator(".token.left").count() == T
        page.select_option("#special-select", "hide")
        wait_ready(page)
        assert page.locator(".token.left").count() == T - 3
        assert "[CLS]" not in page.locator(".token.left").all_text_contents()
        hidden = signature(page, "#head-canvas")
        page.select_option("#special-select", "renorm")
        wait_ready(page)
        assert signature(page, "#head-canvas")["hash"] != hidden["hash"]  # renormalised rows draw stronger lines
        page.select_option("#special-select", "show")
        wait_ready(page)
        # Search highlights matching tokens in both columns.
        page.fill("#token-search", "wa")
        assert page.locator(".token.match").count() == 4  # "was", "warm" on both sides
        assert page.text_content("#search-count") == "4 found"
        # Filter: only the matching query tokens, every key stays.
        page.check("#search-filter")
        page.wait_for_function("document.querySelectorAll('.token.left').length === 2")
        wait_ready(page)
        assert page.locator(".token.left").all_text_contents() == ["was", "warm"]
        assert page.locator(".token.right").count() == T
        page.uncheck("#search-filter")
        page.wait_for_function(f"document.querySelectorAll('.token.left').length === {T}")
        page.fill("#token-search", "")
        # Sentence A/B filter from the logged segments.
        options = page.eval_on_selector_all("#segment-filter option", "os => os.map(o => o.textContent)")
        assert options == [
            "All",
            "Sentence A → Sentence A",
            "Sentence B → Sentence B",
            "Sentence A → Sentence B",
            "Sentence B → Sentence A",
        ]
        page.select_option("#segment-filter", label="Sentence A → Sentence B")
        wait_ready(page)
        assert page.locator(".token.left").count() == 6 and page.locator(".token.right").count() == 4
        page.select_option("#segment-filter", label="All")
        wait_ready(page)
        # Keyboard: ] / [ move the step, ↓ the layer (not while typing in the search field).
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("[")
        page.wait_for_selector("body[data-painted-step='0'][data-state=ready]")
        page.keyboard.press("]")
        page.wait_for_selector("body[data-painted-step='10'][data-state=ready]")
        page.keyboard.press("ArrowDown")
        page.wait_for_selector("body[data-painted-layer='1'][data-state=ready]")
        assert page.locator("img").count() == 0 and dialogs == [] and errors == []


def test_encoder_decoder_switch_and_dark_mode(logged):
    url, _ = logged
    with plugin_page(url) as (page, errors, _):
        page.select_option("#probe-select", label="b / t5/decoder")
        wait_ready(page)
        assert page.eval_on_selector_all(".tba-part", "bs => bs.map(b => b.textContent)") == [
            "Encoder",
            "Decoder",
            "Cross",
        ]
        page.click(".tba-part[data-part='cross']")
        page.wait_for_selector(".tba-part.active[data-part='cross']")
        wait_ready(page)
        assert page.locator(".token.left").count() == 3 and page.locator(".token.right").count() == 4
        assert not page.evaluate("document.body.classList.contains('tba-dark')")
        page.emulate_media(color_scheme="dark")
        page.wait_for_function("document.body.classList.contains('tba-dark')")
        wait_ready(page)
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(32, 33, 36)"
        assert errors == []
