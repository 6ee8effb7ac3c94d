"""`tb-attention checkpoints` on checkpoints a real Trainer saved: step order, resume, unloadable checkpoints."""

import contextlib
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tb_attention import cli  # noqa: E402
from tb_attention.format import codec  # noqa: E402
from tests.models import ClassificationData, minilm_tokenizer, tiny_bert  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """checkpoint-3, -6, -9 from a real Trainer run, plus a state dict of the final model."""
    out = tmp_path_factory.mktemp("train")
    tok = minilm_tokenizer()
    args = transformers.TrainingArguments(
        str(out / "ckpts"),
        max_steps=9,
        per_device_train_batch_size=8,
        save_steps=3,
        report_to="none",
        use_cpu=True,
        learning_rate=1e-3,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=tiny_bert(tok), args=args, train_dataset=ClassificationData(tok), processing_class=tok
    )
    trainer.train()
    torch.save(trainer.model.state_dict(), out / "final_step_12.pt")
    trainer.save_model(str(out / "arch"))  # config for --model
    tok.save_pretrained(str(out / "arch"))
    return out


def _run(*argv):
    proc = subprocess.run(
        [sys.executable, "-m", "tb_attention.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    return proc.returncode, proc.stderr


def _run_here(*argv):
    """The same in this process: no second start of torch and transformers (most of a run's time on 2 cores)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def replayed(saved, tmp_path_factory):
    """Two runs of the command (the second after checkpoint-9 appeared), once for both data loaders."""
    tmp_path = tmp_path_factory.mktemp("replay")
    ckpts = tmp_path / "ckpts"
    shutil.copytree(saved / "ckpts", ckpts)
    probe = tmp_path / "probe.txt"
    probe.write_text("the movie was good\n")
    logdir = tmp_path / "runs" / "x"
    shutil.rmtree(ckpts / "checkpoint-9")  # "not saved yet"
    first = _run("checkpoints", ckpts, "--probe", probe, "--logdir", logdir)
    shutil.copytree(saved / "ckpts" / "checkpoint-9", ckpts / "checkpoint-9")
    second = _run_here("checkpoints", ckpts, "--probe", probe, "--logdir", logdir, "--quiet")
    return tmp_path, first, second


def test_logs_each_checkpoint_in_order_and_resumes(replayed, load):
    tmp_path, (code, err), (code2, err2) = replayed
    assert code == 0, err
    assert "logged 2 checkpoint(s)" in err and "checkpoints: 100%" in err  # tqdm's bar on stderr
    assert code2 == 0, err2
    assert "resuming after step 6: 2 checkpoint(s)" in err2 and "logged 1 checkpoint(s)" in err2

    loaded = load(tmp_path / "runs")
    assert loaded.get("steps", run="x", tag="probe").get_json()["steps"] == [3, 6, 9]
    _, stats = codec.unpack(loaded.get("head_stats", run="x", tag="probe").get_data())
    assert stats["steps"].tolist() == [3, 6, 9] and np.isfinite(stats["sink_mass"]).all()
    tokens = loaded.get("tokens", run="x", tag="probe", step=9).get_json()["tokens"]
    assert tokens == ["[CLS]", "the", "movie", "was", "good", "[SEP]"]


def test_reports_checkpoints_it_cannot_load(saved, tmp_path):
    ckpts = tmp_path / "ckpts"
    shutil.copytree(saved / "ckpts" / "checkpoint-3", ckpts / "checkpoint-3")
    (ckpts / "checkpoint-5").mkdir()
    (ckpts / "checkpoint-5" / "config.json").write_text("{not json")
    (ckpts / "notes.pt").write_bytes(b"")
    shutil.copy(saved / "final_step_12.pt", ckpts / "model_step_12.pt")
    logdir = tmp_path / "log"
    # Without --model the state dict cannot be loaded either: said, and the others still get logged.
    code, err = _run_here("checkpoints", ckpts, "--logdir", logdir, "--quiet", "--tokenizer", saved / "arch")
    assert code == 1
    assert "cannot load" in err and "checkpoint-5" in err
    assert "model_step_12.pt: ValueError: a state-dict checkpoint needs --model" in err
    assert "notes.pt: no step number in the file name" in err
    assert "logged 1 checkpoint(s)" in err
    assert cli.logged_steps(str(logdir), "probe") == {3}


def test_state_dicts_with_model_architecture(saved, tmp_path):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    shutil.copy(saved / "final_step_12.pt", ckpts / "step_12.pt")
    code = cli.main(
        [
            "checkpoints",
            str(ckpts),
            "--logdir",
            str(tmp_path / "log"),
            "--model",
            str(saved / "arch"),
            "--quiet",
            "--probe-length",
            "5",
        ]
    )
    assert code == 0
    assert cli.logged_steps(str(tmp_path / "log"), "probe") == {12}


def test_find_checkpoints_orders_by_step(tmp_path):
    for name in ("checkpoint-100", "checkpoint-20", "checkpoint-3"):
        (tmp_path / name).mkdir()
    (tmp_path / "epoch_7.pt").write_bytes(b"x")
    found, problems = cli.find_checkpoints(str(tmp_path))
    assert [c.step for c in found] == [3, 7, 20, 100] and not problems
