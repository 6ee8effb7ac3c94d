"""`tb-attention checkpoints` at its edges: one line that says what to do, never a traceback, and no empty files."""

import sys

import pytest

from tb_attention import AttentionWriter, cli
from tests.conftest import softmax_attention
from tests.models import minilm_dir


def _exit_message(*argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["checkpoints", *map(str, argv)])
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message  # printed as one line, exit status 1, no traceback
    return message


def _checkpoint_dirs(root, *steps):
    for step in steps:
        (root / f"checkpoint-{step}").mkdir(parents=True)
    return root


def test_missing_probe_file(tmp_path):
    ckpts = _checkpoint_dirs(tmp_path / "ckpts", 3)
    message = _exit_message(ckpts, "--probe", tmp_path / "missing.txt", "--logdir", tmp_path / "log")
    assert "cannot read --probe" in message and "missing.txt: No such file or directory" in message


def test_without_torch_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` meets after a plain pip install
    message = _exit_message(_checkpoint_dirs(tmp_path / "ckpts", 3), "--logdir", tmp_path / "log")
    assert message.startswith("tb-attention checkpoints needs torch, which is not installed")
    assert "pip install 'tb-attention[torch]'" in message


@pytest.mark.parametrize("tokenizer", [False, True])
def test_state_dicts_without_model_ask_for_model_first(tmp_path, tokenizer):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "step_100.pt").write_bytes(b"never loaded")
    extra = ["--tokenizer", minilm_dir()] if tokenizer else []
    message = _exit_message(ckpts, "--logdir", tmp_path / "log", *extra)
    assert "holds state dicts only: pass --model" in message


def test_nothing_to_log_leaves_no_event_file(tmp_path, rng):
    logdir = tmp_path / "log"
    with AttentionWriter(str(logdir)) as w:  # checkpoint-9 was logged by an earlier run
        w.add_attention("probe", softmax_attention(rng, 1, 2, 6), tokens=list("abcdef"), step=9)
    before = sorted(p.name for p in logdir.iterdir())
    ckpts = _checkpoint_dirs(tmp_path / "ckpts", 3, 9)
    probe = tmp_path / "probe.txt"
    probe.write_text("the movie was good\n")
    code = cli.main(
        ["checkpoints", str(ckpts), "--probe", str(probe), "--logdir", str(logdir), "--tokenizer", str(minilm_dir())]
    )
    assert code == 0 and sorted(p.name for p in logdir.iterdir()) == before


def test_no_loadable_checkpoint_leaves_no_event_file(tmp_path, capsys):
    ckpts = _checkpoint_dirs(tmp_path / "ckpts", 5)
    (ckpts / "checkpoint-5" / "config.json").write_text("{not json")
    logdir = tmp_path / "log"
    code = cli.main(["checkpoints", str(ckpts), "--logdir", str(logdir), "--tokenizer", str(minilm_dir()), "--quiet"])
    assert code == 1 and "cannot load" in capsys.readouterr().err
    assert not list(logdir.glob("*tfevents*"))
