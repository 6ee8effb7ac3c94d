"""Chromium: the neuron view's query and key strips have colour bars with numeric ticks, in the vectors' own units
(± the head's largest |component|), saying which colour is positive and which negative."""

import numpy as np

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page
from tests.conftest import softmax_attention

L, H, T, D = 1, 2, 6, 4

# The bar's colours at its top, middle and bottom, and what it says.
BAR_JS = """(id) => {
  const el = document.getElementById(id);
  const c = el.querySelector('canvas');
  const px = (y) => Array.from(c.getContext('2d').getImageData(c.width >> 1, y, 1, 1).data.slice(0, 3));
  return {lo: Number(el.dataset.lo), hi: Number(el.dataset.hi), top: px(1), mid: px(c.height >> 1),
          bottom: px(c.height - 2), ticks: [...el.querySelectorAll('.tba-tick')].map((t) => t.textContent),
          text: el.textContent};
}"""


def test_query_and_key_strips_have_colour_bars_with_ticks(tmp_path, tensorboard_server):
    rng = np.random.default_rng(2)
    q = rng.uniform(-1, 1, size=(L, H, T, D)).astype(np.float32)
    k = rng.uniform(-0.25, 0.25, size=(L, H, T, D)).astype(np.float32)
    q[0, 0, 2, 1], q[0, 1, 3, 0] = -3.0, 5.0  # each head's largest |q| component (exact in float16)
    k[0, 0, 1, 2], k[0, 1, 0, 3] = 0.5, -1.5
    with AttentionWriter(str(tmp_path / "run")) as w:
        attn = softmax_attention(rng, L, H, T)
        w.add_attention("p", attn, tokens=[f"t{i}" for i in range(T)], step=0, queries=q, keys=k)
    url = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(url) as (page, errors, _):
        open_view(page, "neuron")
        qbar, kbar = (page.evaluate(BAR_JS, i) for i in ("nv-q-colorbar", "nv-k-colorbar"))
        assert (qbar["lo"], qbar["hi"], kbar["lo"], kbar["hi"]) == (-3, 3, -0.5, 0.5)
        assert {"-2", "0", "2"} <= set(qbar["ticks"]) and {"-0.5", "0", "0.5"} <= set(kbar["ticks"])
        for bar in (qbar, kbar):
            assert "positive" in bar["text"] and "negative" in bar["text"]
            # The strips' colours: blue at +max, red at −max, the page's background at 0 (shade = |value|).
            assert np.abs(np.subtract(bar["top"], [33, 102, 172])).max() <= 12, bar
            assert np.abs(np.subtract(bar["bottom"], [178, 24, 43])).max() <= 12, bar
            assert min(bar["mid"]) >= 235, bar
        page.select_option("#neuron-head", "1")
        page.wait_for_function("document.getElementById('nv-q-colorbar').dataset.hi === '5'")
        assert page.evaluate(BAR_JS, "nv-k-colorbar")["hi"] == 1.5
        assert errors == []
