"""A real `tensorboard` process finds the plugin through its entry point and serves every logged step."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import softmax_attention

STEPS = list(range(0, 150, 10))  # 15 steps: more than TensorBoard's default of 10 kept per blob tag


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.headers.get_content_type(), resp.read()


def _poll_json(url, predicate, timeout=30):
    deadline = time.time() + timeout
    while True:
        body = json.loads(_get(url)[2])
        if predicate(body) or time.time() > deadline:
            return body
        time.sleep(0.3)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs")
    rng = np.random.default_rng(0)
    with AttentionWriter(str(path / "run1")) as w:
        for step in STEPS:
            w.add_attention("probe/copy", softmax_attention(rng, 2, 4, 6), tokens=list("abcdef"), step=step)
    return path


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_tensorboard_serves_plugin_and_all_steps(logdir, tensorboard_server, load_fast):
    base = tensorboard_server(logdir, f"--load_fast={load_fast}", "--reload_interval=1")
    plugin = base + "data/plugin/attention/"
    listing = _poll_json(base + "data/plugins_listing", lambda b: b.get("attention", {}).get("enabled"))
    assert listing["attention"]["enabled"] is True
    assert listing["attention"]["loading_mechanism"]["module_path"].endswith("/data/plugin/attention/index.js")
    runs = _poll_json(plugin + "runs", lambda b: b["runs"])
    assert runs == {"runs": [{"run": "run1", "probes": ["probe/copy"], "problems": []}]}
    steps = _poll_json(plugin + "steps?run=run1&tag=probe/copy", lambda b: len(b["steps"]) == len(STEPS))
    assert steps["steps"] == STEPS
    status, ctype, body = _get(plugin + "attention?run=run1&tag=probe/copy&step=140&layer=1")
    assert (status, ctype) == (200, "application/octet-stream")
    assert codec.decode_attention(body).shape == (4, 6, 6)
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(plugin + "attention?run=run1&tag=probe/copy&step=140&layer=x")
    assert err.value.code == 400 and b"non-negative integer" in err.value.read()


def test_explicit_samples_per_plugin_still_wins(logdir, tensorboard_server):
    base = tensorboard_server(logdir, "--load_fast=false", "--samples_per_plugin=attention=3", "--reload_interval=1")
    steps = _poll_json(base + "data/plugin/attention/steps?run=run1&tag=probe/copy", lambda b: b["steps"])
    assert len(steps["steps"]) == 3 and steps["steps"][-1] == STEPS[-1]


def test_entry_point_module_imports_nothing_heavy():
    code = "import sys, tb_attention.serve.loader; print(sorted(m for m in ('numpy', 'torch', 'tb_attention.serve.plugin', 'tb_attention.write.writer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
