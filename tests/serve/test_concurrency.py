"""TensorBoard reading while training writes; several writers side by side."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from torch.utils.tensorboard import SummaryWriter

from tb_attention import AttentionWriter
from tests.conftest import softmax_attention

TOKENS = list("abcdef")


def _steps(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())["steps"]


def _wait_for_steps(url, expected, timeout=60):
    deadline, steps = time.time() + timeout, None
    while time.time() < deadline:
        try:
            steps = _steps(url)
        except urllib.error.HTTPError:  # the probe is not loaded yet
            steps = None
        if steps == expected:
            return steps
        time.sleep(0.25)
    return steps


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_reload_picks_up_steps_written_while_tensorboard_runs(tmp_path, rng, tensorboard_server, load_fast):
    w = AttentionWriter(str(tmp_path / "run"))
    for step in range(3):
        w.add_attention("p", softmax_attention(rng, 1, 2, 6), tokens=TOKENS, step=step)
    w.flush()
    base = tensorboard_server(tmp_path, f"--load_fast={load_fast}", "--reload_interval=1")
    url = base + "data/plugin/attention/steps?run=run&tag=p"
    assert _wait_for_steps(url, [0, 1, 2]) == [0, 1, 2]
    for step in range(3, 6):  # the training loop goes on; TensorBoard is not restarted
        w.add_attention("p", softmax_attention(rng, 1, 2, 6), tokens=TOKENS, step=step)
        w.flush()
    assert _wait_for_steps(url, list(range(6))) == list(range(6))
    w.close()


def test_two_writers_in_one_logdir_write_separate_runs(tmp_path, rng, load):
    arrays = [softmax_attention(rng, 2, 2, 6) for _ in range(20)]

    def train(run):
        with AttentionWriter(str(tmp_path / run)) as w:
            for step, attn in enumerate(arrays):
                w.add_attention("p", attn, tokens=TOKENS, step=step)

    threads = [threading.Thread(target=train, args=(run,)) for run in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = load(tmp_path)
    for run in ("one", "two"):
        assert loaded.get("steps", run=run, tag="p").get_json()["steps"] == list(range(20))


def test_two_attention_writers_share_one_summary_writer(tmp_path, rng, load):
    sw = SummaryWriter(str(tmp_path / "run"))
    encoder, decoder = AttentionWriter(sw), AttentionWriter(sw)
    for step in range(15):
        encoder.add_attention("enc", softmax_attention(rng, 2, 2, 6), tokens=TOKENS, step=step)
        decoder.add_attention(
            "dec", softmax_attention(rng, 1, 4, 3, 6), tokens=list("xyz"), key_tokens=TOKENS, step=step
        )
        sw.add_scalar("loss", 1.0, step)
    encoder.close()
    decoder.close()
    sw.close()
    loaded = load(tmp_path)
    for tag in ("enc", "dec"):
        assert loaded.get("steps", run="run", tag=tag).get_json()["steps"] == list(range(15))
        assert loaded.get("attention", run="run", tag=tag, step=14, layer=0).status_code == 200


def test_a_logdir_copied_mid_run_loads(tmp_path, rng, load):
    """What a periodic `gsutil rsync`/`aws s3 sync` of a live run sees: a prefix of the event file."""
    import shutil

    src, copy = tmp_path / "live", tmp_path / "copy"
    w = AttentionWriter(str(src / "run"))
    copies = []
    for step in range(40):
        w.add_attention("p", softmax_attention(rng, 2, 2, 32), tokens=[str(i) for i in range(32)], step=step)
        if step in (5, 20):
            w.flush()
        if step in (10, 25):
            shutil.copytree(src, copy / f"at{step}")  # copied while the background thread is writing
            copies.append(step)
    w.close()
    loaded = load(copy)
    for at in copies:
        steps = loaded.get("steps", run=f"at{at}/run", tag="p").get_json()["steps"]
        flushed = 6 if at == 10 else 21
        assert steps == list(range(len(steps))) and flushed <= len(steps) <= 40
        for step in steps:
            assert loaded.get("attention", run=f"at{at}/run", tag="p", step=step, layer=1).status_code == 200
