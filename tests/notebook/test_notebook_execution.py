"""examples/notebook.ipynb runs headlessly (nbclient), each of its views paints and responds offline in Chromium, and
`jupyter nbconvert --to html` of the executed notebook shows the same views with the network cut."""

import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.notebook.util import nth, offline_page, payload, signature, states, wait_all_ready

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import train_copy  # noqa: E402

# What each view output of the tour opens on, in order (head, model, neuron view of MiniLM; the demo's logdir).
EXPECTED = ["head", "model", "neuron", "head"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    work = tmp_path_factory.mktemp("notebook")
    logdir = work / "demo"
    import torch

    torch.set_num_threads(1)  # the tiny model is slower on two threads than on one (and the cores are shared)
    train_copy.main(["--logdir", str(logdir), "--steps", "100", "--log-every", "25"])
    env = {"TBA_DEMO_LOGDIR": str(logdir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nb = nbformat.read(ROOT / "examples" / "notebook.ipynb", as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    path = work / "executed.ipynb"
    nbformat.write(nb, path)
    return work, nb, path


def _views(nb):
    return [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]


def _hover_target(view):
    return {
        "head": "[data-view-root=head] .token.left[data-index='2']",
        "model": ".mv-detail .token.left[data-index='2']",
        "neuron": "[data-view-root=neuron] .nv-q .token[data-index='2']",
    }[view]


def test_the_tour_runs_and_each_view_paints_and_responds_offline(executed):
    work, nb, _ = executed
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    views = _views(nb)
    assert len(views) == len(EXPECTED)
    # The MiniLM head view at this sentence pair: the whole of all 72 heads, nothing dropped; q/k in the neuron view.
    header, _ = payload(views[0])
    assert header["options"]["notes"] == [] and header["options"]["layer"] == 2
    assert "neuron" not in payload(views[2])[0]["options"]["hide"]
    assert (work / "demo_attention.html").exists()  # run.save(...)
    for i, (html, view) in enumerate(zip(views, EXPECTED)):
        page_file = work / f"output{i}.html"
        page_file.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{html}</body></html>')
        with offline_page() as (page, page_errors, requests):
            page.goto(page_file.as_uri())
            wait_all_ready(page, 1)
            assert states(page)[0]["view"] == view
            if view == "model":
                nth(page, 0, ".mv-thumb").first.click()
                nth(page, 0, ".mv-detail .token.left").first.wait_for()
            root = {"head": "[data-view-root=head]", "model": ".mv-detail", "neuron": "[data-view-root=neuron]"}[view]
            before = signature(page, 0, f"{root} canvas")
            assert before["painted"] > 0
            nth(page, 0, _hover_target(view)).hover()
            page.wait_for_function(
                "([sel, h]) => { const r = document.querySelector('.tb-attention').shadowRoot;"
                " let x = 2166136261; for (const c of r.querySelectorAll(sel)) { if (!c.width) continue;"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " for (let j = 0; j < d.length; j += 4) x = Math.imul(x ^ (d[j] | (d[j+1] << 8) | (d[j+2] << 16)"
                " | (d[j+3] << 24)), 16777619) >>> 0; } return x !== h; }",
                arg=[f"{root} canvas", before["hash"]],
                timeout=10_000,
            )
            assert requests == [] and page_errors == [], (view, requests, page_errors)


def test_the_logdir_output_has_the_step_slider_over_the_demo_run(executed):
    _, nb, _ = executed
    header, responses = payload(_views(nb)[3])
    steps = [e for e in header["entries"] if e["route"] == "steps"]
    assert len(steps) == 1 and steps[0]["params"] == {"run": ".", "tag": "probe/repeat"}
    assert "evolution" not in header["options"]["hide"]  # the demo logs metrics every step


def test_nbconvert_html_of_the_executed_notebook_shows_every_view_offline(executed):
    work, _, path = executed
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "html", str(path), "--output-dir", str(work)],
        check=True,
        capture_output=True,
    )
    html_file = work / "executed.html"
    with offline_page() as (page, _, _):
        # The nbconvert template itself links a few scripts from CDNs: aborted here, and the views do not need them.
        page.goto(html_file.as_uri())
        wait_all_ready(page, len(EXPECTED), timeout=120_000)
        assert [s["view"] for s in states(page)] == EXPECTED
        nth(page, 0, "[data-view-root=head] .token.left[data-index='1']").hover()
        assert signature(page, 0, "[data-view-root=head] canvas")["painted"] > 0
