"""`tb-attention checkpoints s3://…` against a real S3 server (moto, 127.0.0.1): checkpoints read from a bucket, the
run written to a bucket, resume read from the bucket's event files."""

import os
import subprocess
import sys

import pytest
import torch

from tb_attention import cli
from tests.models import minilm_tokenizer, tiny_bert
from tests.object_store import s3_server  # noqa: F401 - fixture

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _upload(client, bucket, folder, prefix):
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            client.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, folder)}")


def _run(*argv):
    proc = subprocess.run(
        [sys.executable, "-m", "tb_attention.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):  # noqa: F811
    """checkpoint-2 and checkpoint-4 (Hugging Face folders with their tokenizer) under s3://ckpts/train/."""
    tok = minilm_tokenizer()
    torch.manual_seed(0)
    name = s3_server.make_bucket("ckpts")
    for step in (2, 4):
        folder = tmp_path_factory.mktemp(f"checkpoint-{step}")
        tiny_bert(tok).save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        _upload(s3_server.client(), name, folder, f"train/checkpoint-{step}")
    return name


def test_checkpoints_are_read_from_a_bucket_and_logged_to_one(s3_server, bucket, tmp_path):  # noqa: F811
    found, problems = cli.find_checkpoints(f"s3://{bucket}/train")
    assert [(c.step, c.kind) for c in found] == [(2, "hf"), (4, "hf")] and not problems
    probe = tmp_path / "probe.txt"
    probe.write_text("the movie was good\n")
    logdir = f"s3://{bucket}/runs/x"
    code, err = _run("checkpoints", f"s3://{bucket}/train", "--probe", probe, "--logdir", logdir, "--quiet")
    assert code == 0, err
    assert "logged 2 checkpoint(s)" in err
    assert cli.logged_steps(logdir, "probe") == {2, 4}
    parts = s3_server.keys(bucket, "runs/x/")
    assert parts and all("events.out.tfevents." in k for k in parts)
    # Run again: the resume scan reads the bucket's event files, nothing is logged twice.
    code, err = _run("checkpoints", f"s3://{bucket}/train", "--probe", probe, "--logdir", logdir, "--quiet")
    assert code == 0, err
    assert "resuming after step 4: 2 checkpoint(s)" in err and "logged 0 checkpoint(s)" in err
    assert s3_server.keys(bucket, "runs/x/") == parts


def test_a_missing_bucket_prefix_is_a_clear_error(s3_server, bucket, tmp_path):  # noqa: F811
    code, err = _run("checkpoints", f"s3://{bucket}/nothing-here", "--logdir", tmp_path / "log", "--quiet")
    assert code != 0 and "is not a directory" in err and "Traceback" not in err
