"""TensorBoard stops on the first Ctrl+C or SIGTERM while a Q/K layout job is running: the plugin's job thread and
its worker process never hold the interpreter's exit (TensorBoard relies on its main thread being the only
non-daemon thread)."""

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.conftest import softmax_attention

L, H, D, N, T = 4, 8, 16, 8, 160  # 32 heads of 2 × 8 × 160 points: far longer than the test waits


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("shutdown")
    rng = np.random.default_rng(0)
    with AttentionWriter(str(path / "run")) as w:
        qs = [rng.normal(size=(L, H, T, D)).astype(np.float32) for _ in range(N)]
        ks = [rng.normal(size=(L, H, T, D)).astype(np.float32) for _ in range(N)]
        attn = [softmax_attention(rng, L, H, T) for _ in range(N)]
        tokens = [[f"t{i}" for i in range(T)] for _ in range(N)]
        w.add_attention_batch("batch", attn, tokens=tokens, step=0, queries=qs, keys=ks)
    return path


def _start(logdir):
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--load_fast=false", "--reload_interval=0", "--reload_task=blocking"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "http://127.0.0.1:" in line:
            return proc, line.split("http://", 1)[1].split("/", 1)[0], lines
    proc.kill()
    raise RuntimeError("".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tensorboard_stops_at_once_while_a_layout_job_runs(logdir, sig):
    proc, host, lines = _start(logdir)
    try:
        url = f"http://{host}/data/plugin/attention/embedding_matrix?run=run&tag=batch&step=0&method=faithful"
        deadline = time.time() + 60
        state = None
        while time.time() < deadline and state != "running":
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    assert resp.status == 202, "the layout finished before the signal: make the batch larger"
                    state = json.loads(resp.read())["state"]
            except urllib.error.HTTPError as e:
                raise AssertionError(e.read()) from None
            time.sleep(0.3)
        assert state == "running"
        time.sleep(2)  # well inside the job
        start = time.time()
        proc.send_signal(sig)  # once
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"TensorBoard still running {time.time() - start:.0f} s after one {sig.name}"
            ) from None
        err = "".join(lines) + proc.stderr.read()
        assert "Traceback" not in err, err
        assert time.time() - start < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
