"""Damaged or too-new data: the UI says what is wrong where, and everything else still draws."""

import numpy as np

from tb_attention.format import metadata
from tb_attention.write import encode
from tests.browser_util import plugin_page
from tests.conftest import softmax_attention, write_raw_probe


def test_damaged_step_and_newer_format_are_explained_in_the_ui(tmp_path, tensorboard_server):
    rng = np.random.default_rng(0)
    tokens = list("abcd")
    blobs = lambda: encode.probe_blobs(softmax_attention(rng, 1, 2, 4), None, None, tokens, None)  # noqa: E731
    for step in (1, 2, 3):
        b = blobs()
        if step == 2:
            b[1] = b"\x00 damaged layer"
        write_raw_probe(tmp_path / "run", "probe", b, {"version": 1, "kind": "probe"}, step=step)
    write_raw_probe(tmp_path / "run", "future", blobs(), {"version": metadata.VERSION + 1, "kind": "probe"})
    base = tensorboard_server(tmp_path, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    with plugin_page(base) as (page, errors, dialogs):
        notice = page.text_content("#notice")
        assert "run / future" in notice and "upgrade tb-attention" in notice
        assert page.evaluate("document.body.dataset.paintedStep") == "3"
        page.fill("#step-slider", "1")  # index 1 = step 2, the damaged one
        page.wait_for_selector("body[data-state=error]", timeout=30_000)
        message = page.text_content("#message")
        assert "layer 0: stored data cannot be decoded" in message
        page.fill("#step-slider", "0")  # the other steps still draw
        page.wait_for_selector("body[data-state=ready][data-painted-step='1']", timeout=30_000)
        assert dialogs == []
