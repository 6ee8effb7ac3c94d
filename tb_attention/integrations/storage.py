"""Checkpoints and logdirs in object storage for `tb-attention checkpoints s3://…` (any fsspec URL).

Transformers and torch load from local files, so each remote checkpoint is copied to a temporary folder just before
it is loaded and deleted right after: at most one checkpoint is on local disk at a time. Endpoints and credentials
come from the storage library's usual places (see write/remote.py).
"""

import contextlib
import os
import shutil
import tempfile

from tb_attention.write.remote import filesystem, is_url

__all__ = ["entries", "is_dir", "local_copy", "tokenizer_copy", "event_files", "is_url"]

# Weights and training state: what a tokenizer never needs.
_HEAVY = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".npz")


def _join(url, name):
    return url.rstrip("/") + "/" + name


def entries(url):
    """[(name, url, is_folder)] directly under `url`, sorted by name."""
    fs, root = filesystem(url)
    out = []
    for info in fs.ls(root, detail=True):
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if name:
            out.append((name, _join(url, name), info.get("type") == "directory"))
    return sorted(out)


def is_dir(url):
    fs, root = filesystem(url)
    return fs.isdir(root)


@contextlib.contextmanager
def local_copy(url, is_folder, skip=()):
    """A temporary local copy of a remote file or folder (names ending in `skip` left out); deleted afterwards."""
    fs, path = filesystem(url)
    tmp = tempfile.mkdtemp(prefix="tb-attention-ckpt-")
    try:
        local = os.path.join(tmp, path.rsplit("/", 1)[-1])
        if is_folder:
            os.makedirs(local)
            for remote in fs.find(path):
                rel = remote[len(path) :].lstrip("/")
                if not rel or rel.endswith(skip) or ".." in rel.split("/"):
                    continue
                os.makedirs(os.path.dirname(os.path.join(local, rel)), exist_ok=True)
                fs.get_file(remote, os.path.join(local, rel))
        else:
            fs.get_file(path, local)
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tokenizer_copy(url):
    """A local copy of a Hugging Face checkpoint folder without its weights: enough for AutoTokenizer."""
    return local_copy(url, True, skip=_HEAVY)


def event_files(url):
    """Yields a local copy of each event file directly under the logdir `url`, one at a time."""
    fs, root = filesystem(url)
    if not fs.isdir(root):
        return
    for name, remote, folder in entries(url):
        if not folder and "tfevents" in name:
            with local_copy(remote, False) as local:
                yield local
