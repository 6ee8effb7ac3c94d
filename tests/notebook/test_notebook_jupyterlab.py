"""In a real JupyterLab (a server on 127.0.0.1, every other request aborted): saved views of a trusted notebook show,
follow JupyterLab's theme and keep the notebook's shortcuts out while focused; the live view runs in JupyterLab's
widget manager against the kernel."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbformat.sign import NotebookNotary

from tb_attention import AttentionWriter
from tests.browser_util import CHROMIUM_ARGS, chromium_path
from tests.conftest import softmax_attention

VIEWS_CELL = """import numpy as np
from tb_attention import notebook as tba
rng = np.random.default_rng(0)
def attn(n, L=2, H=3):
    x = np.exp(rng.normal(size=(L, H, n, n)) * 3)
    return list((x / x.sum(-1, keepdims=True))[:, None])
tba.head_view(attn(10), [f"<b>tok{i}</b>" for i in range(10)])"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        JUPYTER_DATA_DIR=str(root / ".data"),  # the trust database, and nothing of the user's
        JUPYTER_CONFIG_DIR=str(root / ".config"),
        JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"),
    )
    # A notebook whose saved outputs are two views; JupyterLab runs saved outputs' scripts only in a trusted notebook.
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(VIEWS_CELL),
        nbformat.v4.new_code_cell("tba.model_view(attn(8), list('abcdefgh'))"),
    ]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    (root / ".data").mkdir()
    NotebookNotary(data_dir=env["JUPYTER_DATA_DIR"]).sign(nb)
    nbformat.write(nb, root / "views.ipynb")
    rng = np.random.default_rng(0)
    with AttentionWriter(str(root / "logdir" / "run")) as w:
        for step in range(0, 60, 10):
            w.add_attention("probe/x", softmax_attention(rng, 2, 2, 6), tokens=list("abcdef"), step=step)
    live = nbformat.v4.new_notebook()
    live.cells = [
        nbformat.v4.new_code_cell(
            f"from tb_attention import notebook as tba\ntba.show({str(root / 'logdir')!r}, live=True)"
        )
    ]
    live.metadata["kernelspec"] = nb.metadata["kernelspec"]
    nbformat.write(live, root / "live.ipynb")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}"]
        + ["--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/api/status", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"JupyterLab did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def browser_page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(lab) else r.abort())
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


BODIES = (
    "[...document.querySelectorAll('.tb-attention')].map((h) => h.shadowRoot && h.shadowRoot.querySelector('body'))"
)
READY = (
    "(n) => { const b = " + BODIES + "; return b.length === n && b.every((x) => x && x.dataset.state === 'ready'); }"
)


def test_saved_views_show_in_jupyterlab_with_its_theme_and_keys(lab, browser_page):
    page, errors = browser_page
    page.goto(f"{lab}/lab/workspaces/views/tree/views.ipynb?reset")
    page.wait_for_function(READY, arg=2, timeout=120_000)
    assert page.evaluate(f"() => {BODIES}.map((b) => b.dataset.paintedView)") == ["head", "model"]
    assert page.locator(".tb-attention").nth(0).locator(".token.left").first.text_content() == "<b>tok0</b>"
    cells = page.locator(".jp-Notebook .jp-Cell")
    active = "() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].findIndex((c) => c.classList.contains('jp-mod-active'))"
    assert cells.count() == 2 and page.evaluate(active) == 0
    # Focus in the view: its keys move the view, and JupyterLab's command-mode shortcuts (↓: next cell, d d: delete
    # the cell) stay out.
    page.locator(".tb-attention").nth(0).locator("[data-view-root=head] .token.left[data-index='2']").click()
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => " + BODIES + "[0].dataset.paintedLayer === '1'")
    page.keyboard.press("d")
    page.keyboard.press("d")
    page.wait_for_timeout(500)
    assert cells.count() == 2 and page.evaluate(active) == 0
    # JupyterLab's own theme switch (Settings > Theme) reaches the views.
    assert page.evaluate(f"() => {BODIES}.map((b) => b.classList.contains('tba-dark'))") == [False, False]
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.get_by_text("JupyterLab Dark", exact=True).click()
    page.wait_for_function(f"() => {BODIES}.every((b) => b.classList.contains('tba-dark'))", timeout=30_000)
    assert errors == []


def test_the_live_view_runs_in_jupyterlabs_widget_manager(lab, browser_page):
    page, errors = browser_page
    page.goto(f"{lab}/lab/workspaces/live/tree/live.ipynb?reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_timeout(2000)  # the notebook's kernel session
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
    page.get_by_text("Run All Cells", exact=True).click()
    page.wait_for_function(READY, arg=1, timeout=120_000)
    assert page.evaluate(f"() => {BODIES}[0].dataset.paintedStep") == "50"  # the last step first
    page.locator(".tb-attention #step-slider").fill("0")
    page.wait_for_function(f"() => {BODIES}[0].dataset.paintedStep === '0'", timeout=60_000)  # asked of the kernel
    assert errors == []
