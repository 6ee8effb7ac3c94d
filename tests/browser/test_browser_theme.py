"""Chromium test of every view in the light and the dark theme: all visible text meets WCAG AA contrast (4.5:1, 3:1
for large text) against what is really behind it (computed styles, translucent layers composed), and in dark mode
no canvas is mostly a light background."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import plugin_page
from tests.conftest import softmax_attention, start_tensorboard

TOKENS = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]", "it", "was", "warm", "[SEP]"]
L, H, D = 2, 4, 8

# view -> deep link parameters that open the view with its details (enlarged thumbnail, single head, zoom, Δ).
VIEWS = {
    "head": "lock=left:3",
    "model": "sel=1:2",
    "neuron": "head=1&q=4&cmp=prev",
    "matrix": "head=2&zoom=0,6,0,6",
    "diff": "head=1",
    "embedding": "sel=1:1",
    "evolution": "metric=entropy",
}

CONTRAST_JS = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]*)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];  // the canvas of the page itself
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const opacity = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
  const bad = [];
  let checked = 0;
  for (const el of document.querySelectorAll("body *")) {
    if (["SCRIPT", "STYLE", "OPTION", "CANVAS"].includes(el.tagName) || el.closest("option")) continue;
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    const control = el.tagName === "SELECT" || el.tagName === "BUTTON";
    if (!own && !control) continue;
    if (el.disabled || el.closest("[hidden]") || el.getClientRects().length === 0) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === "hidden" || (control && !el.textContent.trim() && el.tagName !== "SELECT")) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const bg = behind(el);
    let fg = parse(cs.color);
    const o = opacity(el);
    fg = over([fg[0], fg[1], fg[2], fg[3] * o], bg);
    const a = lum(fg), b = lum(bg);
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const px = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
    const need = px >= 24 || (px >= 18.66 && bold) ? 3 : 4.5;
    checked++;
    if (ratio < need) bad.push([el.tagName + "." + el.className, (el.textContent || "").trim().slice(0, 40), cs.color, bg.slice(0, 3).join(","), ratio.toFixed(2)]);
  }
  return {checked, bad};
}"""

LIGHT_CANVAS_JS = r"""() => {
  const out = [];
  for (const c of document.querySelectorAll("canvas")) {
    if (!c.width || !c.height || c.getClientRects().length === 0) continue;
    const css = /rgba?\(([^)]*)\)/.exec(getComputedStyle(c).backgroundColor);
    if (css) {
      const [r, g, b, al] = css[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
      if ((al === undefined || al > 0.5) && (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255 > 0.55) {
        out.push([c.id || c.className, "css background", css[0]]);
        continue;
      }
    }
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const counts = new Map();
    let total = 0;
    for (let i = 0; i < d.length; i += 16) {  // every 4th pixel
      total++;
      if (d[i + 3] < 250) continue;
      const key = (d[i] >> 4) + "," + (d[i + 1] >> 4) + "," + (d[i + 2] >> 4);
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    let best = null, n = 0;
    for (const [k, v] of counts) if (v > n) { best = k; n = v; }
    if (!best || n < 0.3 * total) continue;
    const [r, g, b] = best.split(",").map((v) => Number(v) * 16 + 8);
    const y = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    if (y > 0.55) out.push([c.id || c.className, best, (n / total).toFixed(2)]);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("theme")
    rng = np.random.default_rng(3)
    with AttentionWriter(str(root / "run")) as w:
        for step in (0, 50, 100):
            q = rng.normal(size=(L, H, len(TOKENS), D)).astype(np.float32)
            k = rng.normal(size=(L, H, len(TOKENS), D)).astype(np.float32)
            attn = softmax_attention(rng, L, H, len(TOKENS))
            w.add_attention("probe/p", attn, tokens=TOKENS, step=step, queries=q, keys=k, segments=[0] * 8 + [1] * 4)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_view_is_readable_in_both_themes(server, theme):
    problems = []
    for view, extra in VIEWS.items():
        link = f"#view={view}&run=run&tag=probe%2Fp&step=100&layer=1&{extra}"
        with plugin_page(server, hash_=link) as (page, errors, _):
            page.emulate_media(color_scheme=theme)
            want = "true" if theme == "dark" else "false"
            page.wait_for_function(f"document.body.classList.contains('tba-dark') === {want}")
            page.wait_for_selector(f"body[data-state=ready][data-painted-view='{view}']")
            if view == "embedding":
                page.wait_for_selector(".emb-view[data-emb-mode='single'] .emb-badge:not(:empty)")
            page.wait_for_timeout(300)  # a repaint after the theme change
            result = page.evaluate(CONTRAST_JS)
            assert result["checked"] > 10, view  # the check saw the view's text
            problems += [(view, *b) for b in result["bad"]]
            if theme == "dark":
                problems += [(view, "light canvas", *c) for c in page.evaluate(LIGHT_CANVAS_JS)]
            assert errors == [], (view, errors)
    assert problems == []
