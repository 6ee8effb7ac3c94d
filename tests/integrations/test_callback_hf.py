"""The Trainer callback in a real (tiny) Trainer run: metrics every logging step, probes every N, into the
Trainer's own TensorBoard run directory."""

import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tb_attention.format import codec  # noqa: E402
from tb_attention.integrations.hf import AttentionCallback  # noqa: E402
from tests.models import ClassificationData, minilm_tokenizer, tiny_bert  # noqa: E402


def _train(tmp_path, callback, report_to, max_steps=12):
    tok = minilm_tokenizer()
    args = transformers.TrainingArguments(
        str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        logging_steps=2,
        report_to=report_to,
        save_strategy="no",
        use_cpu=True,
        learning_rate=1e-3,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=tiny_bert(tok),
        args=args,
        train_dataset=ClassificationData(tok),
        processing_class=tok,
        callbacks=[callback],
    )
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One Trainer run with the callback, read by both data loaders."""
    tmp_path = tmp_path_factory.mktemp("trainer")
    callback = AttentionCallback(["the movie was good", "bad"], tag="probe", every_n_steps=5)
    _train(tmp_path, callback, report_to=["tensorboard"])
    return tmp_path, callback


def test_trainer_run_logs_metrics_every_logging_step_and_probes_every_n(trained, load):
    tmp_path, callback = trained
    runs = tmp_path / "out" / "runs"
    (run_dir,) = runs.iterdir()  # the TensorBoardCallback's directory: scalars and attention side by side
    assert pathlib.Path(callback.logdir) == run_dir
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2
    loaded = load(runs)
    run = run_dir.name
    probes = loaded.get("runs").get_json()["runs"]
    assert probes[0]["probes"] == ["probe/0", "probe/1"]  # a batch of two texts: one probe per example
    assert loaded.get("steps", run=run, tag="probe/0").get_json()["steps"] == [0, 5, 10]
    _, stats = codec.unpack(loaded.get("head_stats", run=run, tag="probe").get_data())
    # Metrics at every logging step, and at the probe steps (a probe step always comes with its metrics).
    assert stats["steps"].tolist() == [0, 2, 4, 5, 6, 8, 10, 12]
    assert stats["entropy"].shape == (8, 2, 4) and np.isfinite(stats["entropy"]).all()
    manifest = loaded.get("tokens", run=run, tag="probe/1", step=10).get_json()
    assert manifest["tokens"] == ["[CLS]", "bad", "[SEP]"]  # padding removed


def test_default_probe_is_repeated_random_tokens_and_writes_without_tensorboard_callback(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    callback = AttentionCallback(every_n_steps=4, metrics_every_n_steps=1, probe_length=6)
    _train(tmp_path, callback, report_to="none", max_steps=4)
    assert callback.logdir == str(tmp_path / "tb")
    assert callback.logged_steps == [0, 1, 2, 3, 4]
    ids = callback.runner.inputs["input_ids"][0].tolist()
    assert ids[1:7] == ids[7:13] and len(ids) == 13  # [CLS] + 6 random tokens, twice


def test_other_ranks_do_nothing(tmp_path):
    calls = []

    class Model(torch.nn.Module):
        def forward(self, **kw):
            calls.append(kw)

    state = transformers.TrainerState()
    state.is_world_process_zero = False
    args = transformers.TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    callback = AttentionCallback("text", every_n_steps=1)
    callback.on_train_begin(args, state, None, model=Model(), processing_class=None)
    state.global_step = 1
    callback.on_step_end(args, state, None, model=Model())
    callback.on_train_end(args, state, None)
    assert calls == [] and callback.writer is None and not list(tmp_path.iterdir())
