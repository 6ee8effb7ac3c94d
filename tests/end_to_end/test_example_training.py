"""The demo's training script runs, learns, and logs a probe whose attention changes between steps."""

import os
import sys

import numpy as np
import pytest

from tb_attention.format import codec

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import train_copy  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 300-step run at the demo's batch of 32 (one torch thread, as the example sets), read by both loaders."""
    logdir = tmp_path_factory.mktemp("example")
    argv = ["--logdir", str(logdir / "copy"), "--steps", "300", "--batch", "32", "--log-every", "100", "--quiet"]
    final_loss = train_copy.main(argv)
    return logdir, final_loss


def test_copy_example_learns_and_logs_changing_attention(trained, load):
    logdir, final_loss = trained
    assert final_loss < 1.0  # chance level is ln(16) = 2.77
    loaded = load(logdir)
    assert loaded.get("steps", run="copy", tag="probe/repeat").get_json()["steps"] == [0, 100, 200, 300]
    first, last = (
        codec.decode_attention(loaded.get("attention", run="copy", tag="probe/repeat", step=s, layer=1).get_data())
        for s in (0, 300)
    )
    assert np.abs(first - last).max() > 0.3
    manifest = loaded.get("tokens", run="copy", tag="probe/repeat", step=300).get_json()
    assert manifest["tokens"][0] == "<bos>" and manifest["has_qk"]
