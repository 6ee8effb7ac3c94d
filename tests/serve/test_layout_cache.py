"""The Q/K layout cache on disk: damaged and planted files are recomputed, a rewritten run is never served old
layouts (also after a restart), no symlink is followed, the size is bounded, nothing is created in a logdir until
something is cached, and a remote logdir is never written to."""

import io
import os
import shutil
import zipfile

import numpy as np
import pytest
from tensorboard import context
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from tb_attention import AttentionWriter
from tb_attention.format import codec, metadata
from tb_attention.serve import layout_cache, loader
from tb_attention.serve.plugin import AttentionPlugin
from tests.conftest import _python_loader, softmax_attention

L, H, D, N = 2, 2, 8, 6


class Served:
    """The plugin with a logdir and flags in its context, as TensorBoard builds it (Python loader)."""

    def __init__(self, logdir, context_logdir=None, flags=None):
        dp, _ = _python_loader(logdir)
        ctx = base_plugin.TBContext(
            data_provider=dp, logdir=str(context_logdir or logdir), flags=flags, sampling_hints={}
        )
        self.plugin = AttentionPlugin(ctx)
        self.layouts = self.plugin._embedding._layouts
        self.client = werkzeug_test.Client(application.TensorBoardWSGI([self.plugin], data_provider=dp))

    def get(self, route, **params):
        return self.client.get(f"/data/plugin/{metadata.PLUGIN_NAME}/{route}", query_string=params)

    def layout(self, step=0, layer=0, head=0):
        resp = self.get("embedding", run="r", tag="p", step=step, layer=layer, head=head)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        meta, arrays = codec.unpack(resp.get_data())
        lo, hi = np.array(meta["bbox"][:2]), np.array(meta["bbox"][2:])
        return arrays["xy"].astype(np.float64) * (hi - lo) + lo

    def close(self):
        self.plugin._embedding.close()


def _write(logdir, seed, steps=(0, 1)):
    """Run `r`, probe `p` with q/k drawn from `seed`; wall times fixed, so only the content tells two runs apart."""
    rng = np.random.default_rng(seed)
    with AttentionWriter(str(logdir / "r")) as w:
        for step in steps:
            q = rng.normal(size=(L, H, N, D)).astype(np.float32)
            k = rng.normal(size=(L, H, N, D)).astype(np.float32) * 2
            w.add_attention(
                "p",
                softmax_attention(rng, L, H, N),
                tokens=list("abcdef"),
                step=step,
                queries=q,
                keys=k,
                walltime=1000.0 + step,
            )


@pytest.fixture
def served(tmp_path):
    made = []

    def _serve(logdir, **kw):
        made.append(Served(logdir, **kw))
        return made[-1]

    yield _serve
    for s in made:
        s.close()


def _files(folder):
    return sorted(p for p in folder.rglob("*.npz"))


@pytest.mark.parametrize(
    "damage",
    ["empty", "truncated", "garbage", "wrong_shape", "nan", "pickled_object", "other_key", "extra_array"],
)
def test_a_damaged_or_foreign_cache_file_is_recomputed(tmp_path, served, damage):
    logs, cache = tmp_path / "logs", tmp_path / "cache"
    _write(logs, seed=1, steps=(0,))
    first = served(logs, flags=_Flags(cache))
    xy = first.layout(head=0)
    first.layout(head=1)
    (path_h0, path_h1) = sorted(_files(cache), key=lambda p: p.stat().st_mtime_ns)
    body = path_h0.read_bytes()
    if damage == "empty":
        path_h0.write_bytes(b"")
    elif damage == "truncated":
        path_h0.write_bytes(body[: len(body) // 2])
    elif damage == "garbage":
        path_h0.write_bytes(os.urandom(len(body)))
    elif damage == "other_key":
        shutil.copy(path_h1, path_h0)  # a well-formed file of another head
    else:
        with np.load(io.BytesIO(body)) as f:
            arrays = {k: f[k] for k in f.files}
        if damage == "wrong_shape":
            arrays["xy"] = np.zeros((3, 2), np.float32)
        elif damage == "nan":
            arrays["xy"] = np.full_like(arrays["xy"], np.nan)
        elif damage == "pickled_object":
            arrays["info"] = np.array([{"faithfulness": 1.0}], dtype=object)
        else:
            arrays["extra"] = np.zeros(1)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path_h0.write_bytes(buf.getvalue())
    # A restarted server (empty memory cache) answers 200 with the true layout, and replaces the file.
    again = served(logs, flags=_Flags(cache))
    np.testing.assert_allclose(again.layout(head=0), xy, atol=1e-3 * np.abs(xy).max())
    assert layout_cache._parse(path_h0.read_bytes(), again.layouts._name(_key(again, 0))[1], 2 * N) is not None


def _key(s, head):
    ctx = context.RequestContext()
    batch = s.layouts._batches.batch(ctx, "", "r", "p", 0)
    return s.layouts.key(ctx, batch, 0, head, "pca", True, True)


class _Flags:
    def __init__(self, cache_dir=None, cache_mb=None):
        self.attention_cache_dir = None if cache_dir is None else str(cache_dir)
        self.attention_cache_mb = cache_mb


def test_a_run_rewritten_with_other_qk_is_never_served_old_layouts_after_a_restart(tmp_path, served):
    logs, cache = tmp_path / "logs", tmp_path / "cache"
    _write(logs, seed=1)
    old = served(logs, flags=_Flags(cache)).layout(step=1)
    shutil.rmtree(logs)
    _write(logs, seed=2)  # same run, tag, steps and wall times; other q/k
    new = served(logs, flags=_Flags(cache)).layout(step=1)
    fresh = served(logs, flags=_Flags(tmp_path / "cold")).layout(step=1)
    np.testing.assert_allclose(new, fresh, atol=1e-3 * np.abs(fresh).max())
    assert not np.allclose(new, old, atol=1e-2 * np.abs(old).max())


def test_symlinks_in_the_cache_are_never_followed(tmp_path, served):
    logs, cache, outside = tmp_path / "logs", tmp_path / "cache", tmp_path / "outside"
    _write(logs, seed=1, steps=(0,))
    xy = served(logs, flags=_Flags(cache)).layout()
    (path,) = _files(cache)
    # The file's folder moved out of the cache and linked back; the file itself replaced by a link.
    outside.mkdir()
    shutil.move(str(path.parent), str(outside / path.parent.name))
    os.symlink(outside / path.parent.name, path.parent)
    target = outside / path.parent.name / path.name
    before = target.read_bytes()
    s = served(logs, flags=_Flags(cache))
    np.testing.assert_allclose(s.layout(), xy, atol=1e-3 * np.abs(xy).max())  # computed, not read through the link
    assert target.read_bytes() == before  # and not written through it either
    os.unlink(path.parent)
    path.parent.mkdir()
    os.symlink(target, path)
    s = served(logs, flags=_Flags(cache))
    np.testing.assert_allclose(s.layout(), xy, atol=1e-3 * np.abs(xy).max())
    assert not path.is_symlink() and target.read_bytes() == before  # the link was replaced, its target untouched


def test_a_planted_cache_symlink_in_the_logdir_is_not_used(tmp_path, served, monkeypatch):
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TB_ATTENTION_CACHE_DIR", raising=False)
    _write(logs, seed=1, steps=(0,))
    elsewhere.mkdir()
    os.symlink(elsewhere, logs / ".tb-attention-cache")
    served(logs).layout()
    assert not any(elsewhere.rglob("*")) and _files(tmp_path / "xdg")


def test_no_cache_folder_in_the_logdir_until_something_is_cached(tmp_path, served, monkeypatch):
    monkeypatch.delenv("TB_ATTENTION_CACHE_DIR", raising=False)
    logs = tmp_path / "logs"
    _write(logs, seed=1, steps=(0,))
    s = served(logs)
    assert s.get("runs").status_code == 200 and s.get("tokens", run="r", tag="p", step=0).status_code == 200
    assert s.get("embedding_info", run="r", tag="p").status_code == 200
    assert not (logs / ".tb-attention-cache").exists()
    s.layout()
    assert _files(logs / ".tb-attention-cache" / "embedding")


def test_a_remote_logdir_is_cached_in_a_local_folder(tmp_path, served, monkeypatch):
    """TensorBoard's logdir is a URL (the data come through its data provider): the cache goes to ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TB_ATTENTION_CACHE_DIR", raising=False)
    logs = tmp_path / "logs"
    _write(logs, seed=1, steps=(0,))
    s = served(logs, context_logdir="s3://bucket/runs")
    s.layout()
    assert _files(tmp_path / "xdg" / "tb-attention") and not (logs / ".tb-attention-cache").exists()
    assert layout_cache.candidates("s3://bucket/runs")[0].startswith(str(tmp_path / "xdg"))


def test_the_environment_and_flags_choose_the_cache_folder_and_size(tmp_path, monkeypatch):
    monkeypatch.setenv("TB_ATTENTION_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("TB_ATTENTION_CACHE_MB", "3")
    assert layout_cache.configured(None) == (str(tmp_path / "env"), 3 << 20)
    assert layout_cache.configured(_Flags(tmp_path / "flag", 0.5)) == (str(tmp_path / "flag"), 1 << 19)
    for bad in ("x", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("TB_ATTENTION_CACHE_MB", bad)
        with pytest.raises(ValueError, match="layout cache size"):
            layout_cache.configured(None)
    with pytest.raises(base_plugin.FlagsError, match="attention_cache_mb"):
        loader.AttentionLoader().fix_flags(_Flags(None, -2.0))


def test_the_cache_is_bounded_and_drops_the_least_recently_used(tmp_path):
    cache = layout_cache.DiskCache([str(tmp_path / "c")], max_bytes=40_000)
    xy = np.random.default_rng(0).normal(size=(500, 2))  # ~4 KB per file
    for i in range(30):
        cache.store(f"{i:040x}", f"key{i}", xy, {"method": "pca"})
        assert cache.load(f"{0:040x}", "key0", 500) is not None or i == 0  # kept in use: survives the pruning
        total = sum(p.stat().st_size for p in (tmp_path / "c").rglob("*.npz"))
        assert total <= 40_000
    assert cache.load(f"{0:040x}", "key0", 500) is not None
    assert cache.load(f"{1:040x}", "key1", 500) is None  # unused since: pruned
    assert cache.load(f"{29:040x}", "key29", 500) is not None


def test_an_oversized_file_is_not_read(tmp_path, monkeypatch):
    cache = layout_cache.DiskCache([str(tmp_path / "c")], max_bytes=1 << 30)
    xy = np.zeros((100, 2))
    cache.store("ab" * 20, "k", xy, {"method": "pca"})
    monkeypatch.setattr(layout_cache, "_MAX_FILE_BYTES", 100)
    assert cache.load("ab" * 20, "k", 100) is None
    with zipfile.ZipFile(next((tmp_path / "c").rglob("*.npz"))) as z:  # the file itself is intact
        assert sorted(z.namelist()) == ["info.npy", "key.npy", "xy.npy"]
