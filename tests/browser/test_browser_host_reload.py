"""TensorBoard's reload (its header button or auto-reload timer) brings new steps into the open plugin."""

import numpy as np

from tb_attention import AttentionWriter
from tests.browser_util import browser
from tests.conftest import softmax_attention


def _plugin_frame(page):
    for _ in range(300):
        for frame in page.frames:
            if "plugin_entry.html?name=attention" in frame.url:
                return frame
        page.wait_for_timeout(100)
    raise AssertionError("no attention plugin iframe")


def test_tensorboard_reload_picks_up_new_steps(tmp_path, tensorboard_server):
    rng = np.random.default_rng(0)
    w = AttentionWriter(str(tmp_path / "run"))
    for step in range(3):
        w.add_attention("p", softmax_attention(rng, 1, 2, 5), tokens=list("abcde"), step=step)
    w.flush()
    base = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=1")
    with browser() as opener:
        page = opener.new_page(viewport={"width": 1200, "height": 800})
        page.goto(base + "#attention")
        frame = _plugin_frame(page)
        frame.wait_for_selector("body[data-state=ready][data-painted-step='2']", timeout=60_000)
        assert "(3/3)" in frame.text_content("#step-label")
        for step in range(3, 5):  # training goes on
            w.add_attention("p", softmax_attention(rng, 1, 2, 5), tokens=list("abcde"), step=step)
        w.flush()
        page.wait_for_timeout(2500)  # the server's reload interval
        page.click("app-header-reload button, button[aria-label*='eload']")  # TensorBoard's own reload button
        frame.wait_for_function("document.querySelector('#step-label').textContent.includes('/5)')", timeout=30_000)
    w.close()
