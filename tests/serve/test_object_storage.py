"""A real S3-compatible server (moto, 127.0.0.1 only) between a training loop writing `s3://…` and a real
`tensorboard --logdir s3://…` (Python loader: the Rust one reads only local and gs://): new steps appear, every route
works, the plugin adds no object-store request of its own, the layout cache stays local, kill -9 loses at most the
unflushed part."""

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader

from tb_attention import AttentionWriter
from tb_attention.format import codec
from tests.conftest import softmax_attention, start_tensorboard
from tests.object_store import s3_server  # noqa: F401 - fixture

L, H, N, D = 2, 4, 6, 8


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _poll(url, predicate, timeout=60):
    deadline = time.time() + timeout
    while True:
        status, body = _get(url)
        if status == 200 and predicate(json.loads(body)):
            return json.loads(body)
        assert time.time() < deadline, f"timed out on {url}: {status} {body[:200]!r}"
        time.sleep(0.3)


def _log_steps(writer, rng, steps):
    for step in steps:
        writer.add_attention(
            "probe",
            softmax_attention(rng, L, H, N),
            tokens=list("abcdef"),
            step=step,
            queries=rng.normal(size=(L, H, N, D)).astype(np.float32),
            keys=rng.normal(size=(L, H, N, D)).astype(np.float32),
        )


@pytest.fixture
def tensorboard(s3_server):  # noqa: F811
    procs = []

    def _start(logdir, *args):
        proc, url = start_tensorboard(logdir, *args)
        procs.append(proc)
        return url + "data/plugin/attention/"

    yield _start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_tensorboard_reads_a_bucket_while_training_writes_it(s3_server, tensorboard, tmp_path, rng):  # noqa: F811
    bucket = s3_server.make_bucket("live")
    cache = tmp_path / "cache"
    plugin = tensorboard(f"s3://{bucket}/runs", "--reload_interval=1", f"--attention_cache_dir={cache}")
    with AttentionWriter(f"s3://{bucket}/runs/train") as w:
        _log_steps(w, rng, range(0, 5))
        w.flush()
        assert _poll(plugin + "steps?run=train&tag=probe", lambda b: len(b["steps"]) == 5)["steps"] == [0, 1, 2, 3, 4]
        _log_steps(w, rng, range(5, 10))
        w.flush()  # training goes on: the new steps appear without a restart
        assert _poll(plugin + "steps?run=train&tag=probe", lambda b: len(b["steps"]) == 10)["steps"] == list(range(10))
    q = "run=train&tag=probe"
    for route in (
        "runs",
        "metric_runs",
        f"tokens?{q}&step=9",
        f"attention?{q}&step=9&layer=1",
        f"attention?{q}&step=9&layer=1&head=2",
        f"qk?{q}&step=9&layer=0",
        f"head_stats?{q}",
        f"head_diff?{q}&step=9&step_b=3",
        f"rollout?{q}&step=9",
        "embedding_batches",
        f"embedding_info?{q}",
        f"embedding?{q}&step=9&layer=1&head=3",
        f"embedding_matrix?{q}&step=9",
    ):
        status, body = _get(plugin + route)
        assert status == 200, (route, body[:300])
    status, body = _get(plugin + f"image?{q}&step=9")
    assert status == 404 and b"image" in body  # this probe has none: a message, not an error
    assert codec.decode_attention(_get(plugin + f"attention?{q}&step=4&layer=0")[1]).shape == (H, N, N)
    # The layout cache went to the local folder; the bucket holds only the event file parts.
    assert list(cache.rglob("*.npz"))
    keys = s3_server.keys(bucket)
    assert keys and all("/events.out.tfevents." in k for k in keys)


def test_the_plugin_adds_no_object_store_requests_and_a_reload_costs_a_constant(
    s3_server,  # noqa: F811
    tensorboard,
    tmp_path,
    rng,
):
    """100 steps in 10 parts. Counts every request the S3 server answers (docs/scale.md reports them)."""
    bucket = s3_server.make_bucket("economy")
    with AttentionWriter(f"s3://{bucket}/runs/run1") as w:
        for start in range(0, 100, 10):
            _log_steps(w, rng, range(start, start + 10))
            w.flush()
    assert len(s3_server.keys(bucket)) == 10
    s3_server.requests.take()
    cache = tmp_path / "cache"
    plugin = tensorboard(f"s3://{bucket}/runs", "--reload_interval=2", f"--attention_cache_dir={cache}")
    _poll(plugin + "steps?run=run1&tag=probe", lambda b: len(b["steps"]) == 100)
    time.sleep(3)  # past the first reload
    s3_server.requests.take()
    q = "run=run1&tag=probe"
    views = ["runs", f"steps?{q}", f"head_stats?{q}", "embedding_batches", f"embedding_info?{q}"]
    for step in (0, 37, 99):  # the step slider, layers, heads, views
        views += [f"tokens?{q}&step={step}", f"attention?{q}&step={step}&layer=1", f"qk?{q}&step={step}&layer=1"]
        views += [f"embedding?{q}&step={step}&layer=0&head=1", f"head_diff?{q}&step={step}&step_b=1"]
    started = time.time()
    for route in views:
        assert _get(plugin + route)[0] == 200, route
    elapsed = time.time() - started
    time.sleep(6)
    requests = s3_server.requests.take()
    seconds = elapsed + 6
    # What TensorBoard's reloads cost in this window: list the logdir, list the run, poll the newest part.
    per_reload = collections.Counter(
        "list" if "?" in path else "read" if method == "GET" else method.lower() for method, path, _ in requests
    )
    print(f"\nS3 requests in {seconds:.1f} s ({seconds / 2:.1f} reloads, {len(views)} view changes): {per_reload}")
    newest = s3_server.keys(bucket)[-1]
    for method, path, _ in requests:
        assert method in ("GET", "HEAD")
        # Every object request is TensorBoard's poll of the newest part: no read of older parts, no plugin traffic.
        assert "?" in path or path.endswith(newest), path
    reloads = max(1.0, seconds / 2)
    assert len(requests) <= 8 * (reloads + 1)  # a handful per reload, however many steps and parts


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tb_attention import AttentionWriter

    rng = np.random.default_rng(0)
    w = AttentionWriter(sys.argv[1], flush_secs=3600)
    for step in range(100):
        a = rng.random((2, 2, 4, 4)).astype(np.float32)
        w.add_attention("probe", a / a.sum(-1, keepdims=True), tokens=list("abcd"), step=step, metrics=False)
        if step % 5 == 4:
            w.flush()
            print(step, flush=True)
        if step == 22:
            w._queue.drain()  # steps 20-22 are written to the local part, not uploaded
            print("unflushed", flush=True)
            sys.stdin.read()  # wait to be killed
    """
)


def test_kill_9_of_the_writer_loses_only_the_unflushed_part(s3_server, tmp_path):  # noqa: F811
    bucket = s3_server.make_bucket("killed")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, f"s3://{bucket}/run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TMPDIR=str(tmp_path / "spool")),
    )
    (tmp_path / "spool").mkdir()
    lines = []
    while not lines or lines[-1] != "unflushed":
        line = proc.stdout.readline().strip()
        assert line, "the writer exited early"
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    flushed = int(lines[-2])
    steps = []
    for i, key in enumerate(s3_server.keys(bucket)):
        path = tmp_path / f"part{i}"
        path.write_bytes(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read())
        steps += [e.step for e in event_file_loader.EventFileLoader(str(path)).Load() if e.summary.value]
    assert flushed == 19 and steps == list(range(flushed + 1))  # every flushed step; lost: 20-22, never uploaded
    # The lost part is still in the local spool, a readable event file (it can be uploaded by hand).
    (spooled,) = (tmp_path / "spool").rglob("*tfevents*")
    assert [e.step for e in event_file_loader.EventFileLoader(str(spooled)).Load() if e.summary.value] == [20, 21, 22]
