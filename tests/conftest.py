"""Shared fixtures: synthetic probes, the plugin on both TensorBoard data loaders, a real TensorBoard process."""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard import context
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.data import grpc_provider, server_ingester
from tensorboard.plugins import base_plugin
from tensorboard.util import grpc_util
from werkzeug import test as werkzeug_test

from tb_attention.format import metadata
from tb_attention.serve.plugin import AttentionPlugin


def pytest_configure(config):
    # One thread per process, in this process (torch is imported later) and in every subprocess: the tests' models
    # are tiny and the machine has 2 shared cores, so more threads only wait on each other (examples/train_copy.py).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def softmax_attention(rng, layers, heads, q_len, k_len=None, sharpness=3.0):
    logits = rng.normal(size=(layers, heads, q_len, k_len or q_len)) * sharpness
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def write_raw_probe(run_dir, tag, blobs, content, step=1):
    """Writes a probe event by hand, bypassing the writer's checks (damaged or future data)."""
    import json

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from tb_attention.write import encode

    writer = EventFileWriter(str(run_dir))
    meta = metadata.create_summary_metadata(metadata.KIND_PROBE)
    meta.plugin_data.content = json.dumps(content).encode()
    value = summary_pb2.Summary.Value(tag=tag, tensor=encode._blob_sequence_proto(blobs))
    value.metadata.CopyFrom(meta)
    writer.add_event(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value])))
    writer.close()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


class Loaded:
    """The plugin served from one logdir through one data loader, queried like the browser does."""

    def __init__(self, data_provider_, sampling_hints=None):
        ctx = base_plugin.TBContext(data_provider=data_provider_, sampling_hints=sampling_hints or {})
        self.plugin = AttentionPlugin(ctx)
        app = application.TensorBoardWSGI([self.plugin], data_provider=data_provider_)
        self.client = werkzeug_test.Client(app)

    def get(self, route, **params):
        return self.client.get(f"/data/plugin/{metadata.PLUGIN_NAME}/{route}", query_string=params)


def _python_loader(logdir):
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return data_provider.MultiplexerDataProvider(mux, str(logdir)), None


def _rust_loader(logdir):
    ingester = server_ingester.SubprocessServerDataIngester(
        server_binary=server_ingester.get_server_binary(),
        logdir=str(logdir),
        reload_interval=0,  # load once, then serve
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin={metadata.PLUGIN_NAME: 0},
    )
    ingester.start()
    dp = ingester.data_provider
    assert isinstance(dp, grpc_provider.GrpcDataProvider)
    # The data server answers before it has finished its one load; wait until the runs stop changing.
    ctx, previous, deadline = context.RequestContext(), None, time.time() + 30
    while time.time() < deadline:
        runs = sorted(r.run_name for r in dp.list_runs(ctx, experiment_id=""))
        if runs and runs == previous:
            break
        previous = runs
        time.sleep(0.3)
    return dp, ingester


@pytest.fixture(params=["python", "rust"])
def load(request):
    """load(logdir) -> Loaded, on the Python multiplexer and on the Rust data server."""
    ingesters = []

    def _load(logdir):
        dp, ingester = (_python_loader if request.param == "python" else _rust_loader)(logdir)
        ingesters.append(ingester)
        return Loaded(dp)

    yield _load
    for ingester in ingesters:
        if ingester is not None:
            ingester._stdin_handle.close()  # the data server exits when its stdin closes


def start_tensorboard(logdir, *extra_args, timeout=60):
    """Starts `tensorboard` on 127.0.0.1 with a free port; returns (process, base_url)."""
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra_args,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError("TensorBoard did not start:\n" + "".join(lines))


@pytest.fixture
def tensorboard_server():
    """tensorboard_server(logdir, *args) -> base URL of a real TensorBoard process (stopped after the test)."""
    procs = []

    def _start(logdir, *args):
        proc, url = start_tensorboard(logdir, *args)
        procs.append(proc)
        return url

    yield _start
    for proc in procs:
        proc.kill()
        proc.wait()
