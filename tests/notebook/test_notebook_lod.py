"""Long probes in notebook outputs (docs/notebook.md, "Long probes"): the level-of-detail answers the views ask for
past 512 tokens or 144 heads (`lod`, `topk`, `tile`) are embedded byte for byte as the plugin serves them, within the
byte cap (what is left out is said, and a tile left out is a 404 with a message), and a 4,096-token probe paints
offline in Chromium: the head view's lines, the model view's thumbnails and the matrix view's tiles."""

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention import notebook as tba
from tb_attention.format import codec
from tests.conftest import Loaded, _python_loader, softmax_attention
from tests.notebook.util import nth, offline_page, payload, signature, wait_all_ready

N = 1100  # past 512 queries (top-k) and 1,024² weights (tiles): coarsest level 3, and 2, 1, 0 below it
WIDE = 80  # heads of a short probe whose 2 x 80 heads are past the model view's 144 (thumbnails only)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lod")
    rng = np.random.default_rng(0)
    with AttentionWriter(str(root / "a")) as w:
        w.add_attention("long", softmax_attention(rng, 1, 2, N), tokens=[f"t{i}" for i in range(N)], step=3)
        w.add_attention("wide", softmax_attention(rng, 2, WIDE, 6), tokens=list("abcdef"), step=3)
    return root


@pytest.fixture(scope="module")
def plugin(logdir):
    dp, _ = _python_loader(logdir)
    return Loaded(dp)


def _entries(header, route):
    return [e for e in header["entries"] if e["route"] == route]


def _body(html):
    header, responses = payload(html)
    return header, {(e["route"], frozenset(e["params"].items())): e for e in header["entries"]}, responses


def _served(plugin, route, params):
    res = plugin.get(route, **params)
    assert res.status_code == 200, res.get_data(as_text=True)
    return res.get_data()


def test_level_of_detail_answers_are_the_plugins_bytes(logdir, plugin):
    header, _, responses = _body(tba.show(logdir, probe="long").html())
    tiles = _entries(header, "tile")
    # Every zoom level embedded at the default cap: 1 + 2² + 3² + 5² tiles per head.
    assert len(tiles) == 2 * (1 + 4 + 9 + 25) and {e["params"]["level"] for e in tiles} == {"0", "1", "2", "3"}
    routes = [e for e in header["entries"] if e["route"] in ("lod", "topk", "tile")]
    assert {e["route"] for e in routes} == {"lod", "topk", "tile"}
    for e in routes:
        ours = responses[(e["route"], frozenset(e["params"].items()))]
        assert ours == _served(plugin, e["route"], e["params"]), e
    # The attention itself fits whole here: the plugin's bytes too.
    at = {"run": "a", "tag": "long", "step": "3", "layer": "0"}
    assert responses[("attention", frozenset(at.items()))] == _served(plugin, "attention", at)
    assert not header["options"]["notes"]

    # Many heads, few tokens: thumbnails only (the head and matrix views draw whole layers).
    header, _, responses = _body(tba.show(logdir, probe="wide").html())
    assert {e["route"] for e in header["entries"]} >= {"lod"} and not _entries(header, "topk")
    for e in _entries(header, "lod"):
        assert responses[("lod", frozenset(e["params"].items()))] == _served(plugin, "lod", e["params"])
    assert len(_entries(header, "lod")) == 2 and not _entries(header, "tile")


def test_under_a_small_cap_the_coarsest_tiles_stay_and_the_rest_is_said(logdir, plugin):
    cap = 400_000
    view = tba.show(logdir, probe="long", max_bytes=cap)
    assert view.nbytes <= cap
    header, by_key, responses = _body(view.html())
    levels = {(e["params"]["head"], e["params"]["level"]) for e in _entries(header, "tile")}
    assert {("0", "3"), ("1", "3")} <= levels and ("0", "0") not in levels
    notes = " ".join(header["options"]["notes"])
    assert "matrix view: each head's coarsest tile" in notes and "top 8 keys kept" in notes
    assert "not in this notebook output" in header["options"]["missing"]["tile"]
    # The attention of a layer past 512 tokens is its top-k answer (one body, expanded in the browser).
    at = {"run": "a", "tag": "long", "step": "3", "layer": "0"}
    attention, topk = by_key[("attention", frozenset(at.items()))], by_key[("topk", frozenset(at.items()))]
    assert attention["lod"] == "from-topk" and attention["key_len"] == N
    assert (attention["offset"], attention["length"]) == (topk["offset"], topk["length"])
    assert responses[("topk", frozenset(at.items()))] == _served(plugin, "topk", at)


def _peaks(n, heads):
    """Each query's weight 0.9 on key (37·i + 11·h) mod n, the rest spread evenly: pixel-checkable tiles."""
    w = np.full((heads, n, n), 0.1 / (n - 1), np.float32)
    rows = np.arange(n)
    for h in range(heads):
        w[h, rows, (rows * 37 + h * 11) % n] = 0.9
    return w


def test_a_4096_token_probe_paints_offline_at_its_level_of_detail(tmp_path):
    n, heads = 4096, 2
    view = tba.head_view([_peaks(n, heads)[None]], [f"w{i}" for i in range(n)], max_bytes=3 << 20)
    assert view.nbytes <= 3 << 20
    header, responses = payload(view.html())
    assert {e["route"] for e in header["entries"]} >= {"lod", "topk", "tile"}
    at = {"run": "notebook", "tag": "attention", "step": "0", "layer": "0"}
    meta, arrays = codec.unpack(responses[("lod", frozenset(dict(at, size="64").items()))])
    assert meta["query_len"] == n and arrays["thumbs"].shape == (heads, 64, 64)
    page_path = tmp_path / "page.html"
    page_path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{view.html()}</body></html>')
    host = "document.querySelector('.tb-attention')"
    body = f"{host}.shadowRoot.querySelector('body')"
    with offline_page() as (page, errors, requests):
        page.goto(page_path.as_uri())
        wait_all_ready(page, 1, timeout=120_000)
        # Head view: the virtual one, lines from the embedded top-k.
        nth(page, 0, ".head-view.sparse").wait_for()
        assert signature(page, 0, "[data-view-root=head] canvas")["painted"] > 1000
        # Model view: every head's thumbnail from the embedded `lod`.
        nth(page, 0, ".tba-tab[data-view=model]").click()
        nth(page, 0, "#model-thumbs[data-done='1']").wait_for(timeout=60_000)
        assert nth(page, 0, ".mv-lod-thumb").count() == heads
        sig = signature(page, 0, ".mv-lod-thumb")
        assert sig["painted"] == heads * 64 * 64
        # Matrix view: the coarsest tile first, then the fit view's level, all embedded: it settles.
        nth(page, 0, ".tba-tab[data-view=matrix]").click()
        page.wait_for_function(f"{body}.dataset.paintedView === 'matrix' && {body}.dataset.state === 'ready'")
        assert page.evaluate(f"{host}.__tbaTiles.requested[0]") == "4/0/0"
        page.wait_for_function(f"{host}.__tbaTiles.settled", timeout=30_000)
        cell = page.evaluate(f"{host}.__tbaTiles.cellAt(0, 0)")
        assert cell["level"] < 4 and abs(cell["code"] - round(255 * 0.9 ** (1 / 3))) <= 2
        assert signature(page, 0, "#matrix-tiles")["painted"] > 0
        # One cell per weight is past the embedded zoom levels: a note, the coarser tiles stay, nothing hangs.
        page.evaluate(f"{host}.__tbaTiles.zoomTo({{q0: 1984, q1: 2016, k0: 256, k1: 288}})")
        page.wait_for_function(
            f"{body}.querySelector('.tba-summary').textContent.includes('not in this notebook output')",
            timeout=30_000,
        )
        assert page.evaluate(f"{host}.__tbaTiles.cellAt(2000, 272)")["level"] > 0  # drawn from a coarser tile
        assert page.evaluate(f"{body}.dataset.state") == "ready"
        assert signature(page, 0, "#matrix-tiles")["painted"] > 0
        assert requests == [] and errors == []


def test_the_neuron_view_past_512_tokens_reads_one_heads_qk_from_the_embedded_layer(tmp_path):
    n, heads, d = 600, 2, 8
    rng = np.random.default_rng(1)
    q, k = (rng.normal(size=(1, heads, n, d)).astype(np.float32) for _ in range(2))
    logits = np.einsum("lhqd,lhkd->lhqk", q, k) / np.sqrt(d)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    with AttentionWriter(str(tmp_path / "a")) as w:
        w.add_attention(
            "p",
            (a / a.sum(-1, keepdims=True)).astype(np.float32),
            tokens=[f"t{i}" for i in range(n)],
            step=0,
            queries=q,
            keys=k,
        )
    view = tba.show(tmp_path, view="neuron")
    page_path = tmp_path / "page.html"
    page_path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{view.html()}</body></html>')
    with offline_page() as (page, errors, requests):
        page.goto(page_path.as_uri())
        wait_all_ready(page, 1, timeout=60_000)  # `qk?head=0` is cut from the layer's q/k (no entry of its own)
        assert (
            page.evaluate(
                "() => document.querySelector('.tb-attention').shadowRoot.querySelector('body').dataset.paintedView"
            )
            == "neuron"
        )
        assert requests == [] and errors == []
