"""The diff view of a long probe (issue 12): past 512 tokens it never loads a whole layer; it draws the Δ of the
shown head from one head at each step and ranks every head by the server's sampled Jensen–Shannon divergence."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.browser_util import open_view, plugin_page
from tests.conftest import start_tensorboard

N, HEADS = 1024, 3
TOKENS = [f"w{i}" for i in range(N)]


def _weights(step):
    """Each query puts 0.9 on one key; at step 1 only head 2 moves its peak, so head 2 changed most."""
    w = np.full((1, HEADS, N, N), 0.1 / (N - 1), dtype=np.float32)
    rows = np.arange(N)
    for h in range(HEADS):
        shift = 7 if (step == 1 and h == 2) else 0
        w[0, h, rows, (rows * 5 + h + shift) % N] = 0.9
    return w


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("difflong")
    with AttentionWriter(str(root / "run")) as w:
        for step in (0, 1):
            w.add_attention("probe", _weights(step), tokens=TOKENS, step=step)
    proc, url = start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    yield url
    proc.kill()
    proc.wait()


def test_long_probe_diff_draws_one_head_and_ranks_heads_by_the_server(server):
    with plugin_page(server, hash_="#step=1") as (page, errors, _):
        open_view(page, "diff")
        page.wait_for_selector("#diff-ranking tr[data-layer]", timeout=30_000)
        first = page.eval_on_selector("#diff-ranking tr[data-layer]", "tr => tr.dataset.head")
        assert first == "2"  # the head whose peaks moved
        title = page.inner_text(".diff-side .hm-title")
        assert "Jensen" in title and "sampled" in title
        assert page.is_visible("#diff-ranking")
        summary = page.inner_text("#message, .tba-summary") if page.query_selector(".tba-summary") else ""
        assert "Δ = step 1" in (summary or page.content())
        urls = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
        assert any("/head_diff?" in u for u in urls)
        assert not [u for u in urls if "/attention?" in u and "head=" not in u], "a whole layer was requested"
        assert errors == []
