"""Chromium: the head view's line band uses the page's width (the token columns keep theirs), at two window
widths and when the window is resized."""

import numpy as np

from tb_attention import AttentionWriter
from tests.browser_util import plugin_page
from tests.conftest import softmax_attention

TOKENS = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]

# Geometry of the head view in the page, CSS px.
GEOMETRY_JS = """() => {
  const root = document.querySelector('[data-view-root=head] .head-view');
  const body = root.parentElement.getBoundingClientRect();
  const left = root.querySelector('.token-col.left').getBoundingClientRect();
  const right = root.querySelector('.token-col.right').getBoundingClientRect();
  const bar = root.parentElement.querySelector('.tba-colorbar, [class*=colorbar]');
  const canvas = document.querySelector('#head-canvas');
  // The rightmost painted column of the line canvas, in CSS px from the band's left edge.
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let maxX = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) maxX = Math.max(maxX, (i >> 2) % canvas.width);
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  return {band: right.left - left.right, leftW: left.width, rightW: right.width, bodyRight: body.right,
          viewRight: right.right, barRight: bar ? bar.getBoundingClientRect().right : 0,
          barTop: bar ? bar.getBoundingClientRect().top : 0, viewTop: left.top,
          lineEnd: maxX / scale - left.width};
}"""


def _geometry(page):
    return page.evaluate(GEOMETRY_JS)


def test_the_line_band_fills_the_width_and_follows_a_resize(tmp_path, tensorboard_server):
    rng = np.random.default_rng(3)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", softmax_attention(rng, 1, 2, len(TOKENS)), tokens=TOKENS, step=0)
    url = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(url, width=800, height=700) as (page, errors, _):
        narrow = _geometry(page)
        page.set_viewport_size({"width": 1100, "height": 700})
        page.wait_for_function(f"({GEOMETRY_JS})().band > {narrow['band'] + 100}")
        page.wait_for_timeout(300)
        wide = _geometry(page)
        assert errors == []
    for g in (narrow, wide):
        assert 160 <= g["band"] <= 900
        assert g["viewRight"] <= g["bodyRight"] and g["barRight"] <= g["bodyRight"]  # nothing runs off the page
        assert abs(g["barTop"] - g["viewTop"]) < 40  # the colour bar stays beside the view, not wrapped below it
        assert g["lineEnd"] > g["band"] - 8  # the lines reach across the whole band
    # The columns keep their width; the band takes the 300 px the window gained.
    assert (wide["leftW"], wide["rightW"]) == (narrow["leftW"], narrow["rightW"])
    assert abs((wide["band"] - narrow["band"]) - 300) <= 2, (narrow, wide)


LONG_BAND_JS = """() => {
  const l = document.querySelector('.head-view.sparse .token.left[data-index="0"]').getBoundingClientRect();
  const r = document.querySelector('.head-view.sparse .token.right[data-index="0"]').getBoundingClientRect();
  const root = document.querySelector('.head-view.sparse').parentElement.getBoundingClientRect();
  return {band: r.left - l.right, right: r.right, bodyRight: root.right};
}"""


def test_the_long_probe_head_view_band_fills_the_width_too(tmp_path, tensorboard_server):
    n = 600  # past 512 queries: the virtual head view with top-k lines
    rng = np.random.default_rng(4)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("p", softmax_attention(rng, 1, 1, n), tokens=[f"t{i}" for i in range(n)], step=0)
    url = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(url, width=900, height=700) as (page, errors, _):
        page.wait_for_selector(".head-view.sparse .token.right[data-index='0']")
        narrow = page.evaluate(LONG_BAND_JS)
        page.set_viewport_size({"width": 1300, "height": 700})
        page.wait_for_function(f"({LONG_BAND_JS})().band > {narrow['band'] + 300}")
        wide = page.evaluate(LONG_BAND_JS)
        assert errors == []
    for g in (narrow, wide):
        assert 160 <= g["band"] <= 900 and g["right"] <= g["bodyRight"] + 1
    assert abs((wide["band"] - narrow["band"]) - 400) <= 2, (narrow, wide)
