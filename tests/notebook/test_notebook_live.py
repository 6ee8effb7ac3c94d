"""The live mode (anywidget): the kernel answers the app's route requests from the logdir with the plugin's bytes,
and the widget's module, run in Chromium against a stand-in for anywidget's model, paints and loads steps on demand."""

import base64
import json

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention import notebook as tba
from tb_attention.notebook import widget
from tests.conftest import Loaded, _python_loader, softmax_attention
from tests.notebook.util import offline_page


@pytest.fixture
def logdir(tmp_path):
    rng = np.random.default_rng(11)
    with AttentionWriter(str(tmp_path / "run")) as w:
        for step in range(0, 110, 10):
            q = rng.standard_normal((2, 2, 6, 4)).astype(np.float32)
            w.add_attention(
                "probe/x", softmax_attention(rng, 2, 2, 6), tokens=list("abcdef"), step=step, queries=q, keys=q
            )
    return tmp_path


def _ask(view, url):
    sent = []
    view.send = lambda content, buffers=None: sent.append((content, buffers))
    view._on_msg(view, {"type": "request", "id": 7, "url": url}, [])
    ((content, buffers),) = sent
    assert content["id"] == 7
    return content["status"], content["content_type"], buffers[0]


def test_the_kernel_answers_with_the_plugins_bytes(logdir):
    view = tba.show(logdir, live=True)
    assert isinstance(view, widget.LiveView)
    loaded = Loaded(_python_loader(logdir)[0])
    for route, params in [
        ("steps", {"run": "run", "tag": "probe/x"}),
        ("tokens", {"run": "run", "tag": "probe/x", "step": 10}),
        ("attention", {"run": "run", "tag": "probe/x", "step": 20, "layer": 1}),
        ("qk", {"run": "run", "tag": "probe/x", "step": 0, "layer": 0}),
        ("head_stats", {"run": "run", "tag": "probe/x"}),
        # The level-of-detail routes the views ask for long probes (lod_parts.answer, analysis/lod.py).
        ("lod", {"run": "run", "tag": "probe/x", "step": 10, "layer": 1, "size": 64}),
        ("topk", {"run": "run", "tag": "probe/x", "step": 10, "layer": 0}),
        ("topk", {"run": "run", "tag": "probe/x", "step": 10, "layer": 0, "head": 1}),
        ("tile", {"run": "run", "tag": "probe/x", "step": 10, "layer": 1, "head": 1, "level": 0, "row": 0, "col": 0}),
    ]:
        query = "&".join(f"{k}={v}".replace("/", "%2F") for k, v in params.items())
        status, _, body = _ask(view, f"{route}?{query}")
        served = loaded.get(route, **params)
        assert status == 200
        if route in ("steps", "tokens"):
            assert json.loads(body) == served.get_json()
        else:
            assert body == served.get_data()
    assert _ask(view, "attention?run=run&tag=probe%2Fx&step=5&layer=0")[0] == 404
    assert _ask(view, "embedding_batch?run=run&tag=probe%2Fx")[0] == 404
    assert _ask(view, "tile?run=run&tag=probe%2Fx&step=10&layer=0&head=0&level=0&row=1&col=0")[0] == 404
    with pytest.raises(ValueError, match="for a logdir"):
        tba.show(object(), live=True)


def test_the_widget_module_paints_and_loads_steps_on_demand(logdir, tmp_path):
    view = tba.show(logdir, live=True, view="neuron")
    asked = []

    def answer(content):
        asked.append(content["url"])
        status, ctype, body = view.source.answer(content["url"])
        return {"status": status, "content_type": ctype, "body": base64.b64encode(body).decode()}

    page_file = tmp_path / "live.html"
    page_file.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><div id="out"></div></body></html>'
    )
    with offline_page() as (page, errors, requests):
        page.expose_function("kernel", answer)
        page.goto(page_file.as_uri())
        # A stand-in for anywidget's model: traits by name, custom messages both ways, buffers as DataViews.
        page.evaluate(
            """async ([esm, bundle, options]) => {
              const handlers = [];
              const model = {
                get: (name) => ({ bundle, options })[name],
                on: (event, f) => { if (event === 'msg:custom') handlers.push(f); },
                send: (content) => window.kernel(content).then((r) => {
                  const bin = atob(r.body), bytes = new Uint8Array(bin.length);
                  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                  const reply = { type: 'response', id: content.id, status: r.status, content_type: r.content_type };
                  for (const f of handlers) f(reply, [new DataView(bytes.buffer)]);
                }),
              };
              const url = URL.createObjectURL(new Blob([esm], { type: 'text/javascript' }));
              const m = await import(url);
              await m.default.render({ model, el: document.getElementById('out') });
            }""",
            [widget._ESM, view.bundle, view.options],
        )
        ready = (
            "() => { const b = document.querySelector('.tb-attention').shadowRoot.querySelector('body');"
            " return b.dataset.state === 'ready' && b.dataset.paintedView === '%s' && b.dataset.paintedStep === '%s'; }"
        )
        page.wait_for_function(ready % ("neuron", "100"), timeout=30_000)
        # Only what the view draws, and the neighbouring steps the shell prefetches, are asked for.
        assert not any("step=0&" in u or u.endswith("step=0") for u in asked)
        page.locator(".tb-attention #step-slider").fill("0")
        page.wait_for_function(ready % ("neuron", "0"), timeout=30_000)
        assert any(u.startswith("qk?") and "step=0&" in u for u in asked)
        assert requests == [] and errors == []
