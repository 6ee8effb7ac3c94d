"""AttentionWriter to a URL (fsspec's memory:// here; a real S3 server in tests/serve/test_object_storage.py): immutable
parts in name order, no re-upload, the timer, part size and spool bounds, failed uploads kept for a retry."""

import importlib
import os
import time

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2

from tb_attention import AttentionWriter
from tb_attention.write import remote
from tests.conftest import softmax_attention


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    yield fs
    fs.store.clear()


def _events(data, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(data)
    return list(event_file_loader.EventFileLoader(str(path)).Load())


def _parts(fs, prefix):
    return sorted(p for p in fs.find(prefix) if "tfevents" in p)


def _steps(fs, prefix, tmp_path, tag="probe"):
    """Steps of `tag` over every part, read in name order as TensorBoard's Python loader does."""
    steps = []
    for i, part in enumerate(_parts(fs, prefix)):
        for event in _events(fs.cat_file(part), tmp_path, f"p{i}"):
            if any(v.tag == tag for v in event.summary.value):
                steps.append(event.step)
    return steps


def _attn(rng):
    return softmax_attention(rng, 2, 3, 5)


def test_each_flush_uploads_one_new_immutable_part_in_name_order(memfs, tmp_path, rng):
    before: dict = {}
    with AttentionWriter("memory://bucket/runs/exp1") as w:
        for step in range(12):
            w.add_attention("probe", _attn(rng), tokens=list("abcde"), step=step, metrics=False)
            if step % 4 == 3:
                w.flush()
                sizes = {p: memfs.info(p)["size"] for p in _parts(memfs, "/bucket/runs/exp1")}
                assert {p: s for p, s in sizes.items() if p in before} == before  # old parts never rewritten
                before = sizes
    parts = _parts(memfs, "/bucket/runs/exp1")
    assert len(parts) == 3 and parts == sorted(parts)
    assert all(os.path.basename(p).startswith("events.out.tfevents.") for p in parts)
    for i, part in enumerate(parts):  # every part is a complete event file of its own
        events = _events(memfs.cat_file(part), tmp_path, f"whole{i}")
        assert events[0].file_version == "brain.Event:2"
    assert _steps(memfs, "/bucket/runs/exp1", tmp_path) == list(range(12))


def test_bytes_uploaded_grow_linearly_not_quadratically(memfs, tmp_path, rng):
    """TensorBoard's TF-free S3 writer re-uploads the whole file per flush; here each byte goes up once."""
    puts = []
    original = MemoryFileSystem.put_file

    def counting(self, lpath, rpath, *args, **kwargs):
        puts.append(os.path.getsize(lpath))
        return original(self, lpath, rpath, *args, **kwargs)

    MemoryFileSystem.put_file = counting
    try:
        with AttentionWriter("memory://bucket/lin") as w:
            for step in range(30):
                w.add_attention("probe", _attn(rng), tokens=list("abcde"), step=step, metrics=False)
                w.flush()
    finally:
        MemoryFileSystem.put_file = original
    stored = sum(memfs.info(p)["size"] for p in _parts(memfs, "/bucket/lin"))
    assert len(puts) == 30 and sum(puts) == stored
    assert max(puts) < 3 * min(puts)  # the 30th upload is no bigger than the first


def test_a_part_goes_up_after_flush_secs_without_a_flush(memfs, tmp_path, rng):
    w = AttentionWriter("memory://bucket/timer", flush_secs=1)
    try:
        w.add_attention("probe", _attn(rng), tokens=list("abcde"), step=0, metrics=False)
        deadline = time.time() + 20
        while not _parts(memfs, "/bucket/timer") and time.time() < deadline:
            time.sleep(0.2)
        assert _steps(memfs, "/bucket/timer", tmp_path) == [0]
    finally:
        w.close()


def _event(step, size=1000):
    event = event_pb2.Event(step=step, wall_time=float(step))
    event.summary.value.add(tag="probe").tensor.string_val.append(bytes(size))
    return event


def test_parts_roll_over_at_part_bytes_and_only_the_open_part_stays_local(memfs, tmp_path):
    events = remote.RemoteEventFileWriter("memory://bucket/roll", part_bytes=4096, max_spool_bytes=1 << 20)
    for step in range(20):
        events.add_event(_event(step))
        local = sum(os.path.getsize(os.path.join(events._spool, f)) for f in os.listdir(events._spool))
        assert local < 4096 + 1100
    assert (
        4 <= len(_parts(memfs, "/bucket/roll")) <= 5
    )  # ~20 KB in 4 KB parts, uploaded while writing, before any flush
    events.close()
    assert _steps(memfs, "/bucket/roll", tmp_path) == list(range(20))
    assert not os.path.exists(events._spool)  # close() removes the spool


_registry = importlib.import_module("fsspec.registry")._registry


class _Store(MemoryFileSystem):
    """fsspec's in-memory store (shared with memory://) under another URL scheme."""

    @classmethod
    def _strip_protocol(cls, path):
        for p in cls.protocol:
            if path.startswith(p + "://"):
                path = path[len(p) + 3 :]
        return super()._strip_protocol(path)


class _Down(_Store):
    """A store that refuses uploads until `up` is set."""

    protocol = ("downstore",)
    up = False

    def put_file(self, lpath, rpath, *args, **kwargs):
        if not type(self).up:
            raise ConnectionError("store unreachable")
        return super().put_file(lpath, rpath, *args, **kwargs)


class _FakeGCS(_Store):
    protocol = ("gs", "gcs")


@pytest.fixture
def downstore(memfs):
    fsspec.register_implementation("downstore", _Down, clobber=True)
    _Down.up = False
    yield fsspec.filesystem("downstore")
    _registry.pop("downstore", None)


def test_failed_uploads_stay_spooled_retry_in_order_and_are_bounded(downstore, tmp_path):
    events = remote.RemoteEventFileWriter("downstore://bucket/run", part_bytes=2048, max_spool_bytes=16384)
    events.add_event(_event(0))
    with pytest.raises(OSError, match="store unreachable"):
        events.flush()  # flush reports the failure ...
    assert len(events._pending) == 1  # ... and keeps the part for a retry
    with pytest.raises(OSError, match="max_spool_bytes=16384"):  # the local spool is bounded
        for step in range(1, 100):
            events.add_event(_event(step))
    spooled = sum(os.path.getsize(os.path.join(events._spool, f)) for f in os.listdir(events._spool))
    assert spooled <= 16384 + 2048
    _Down.up = True
    events.flush()  # the store is back: everything spooled goes up, oldest first
    assert not events._pending
    steps = _steps(downstore, "/bucket/run", tmp_path)
    assert steps == list(range(len(steps))) and len(steps) >= 8
    events.close()


def test_attention_writer_flush_and_close_report_an_unreachable_store(downstore, rng):
    w = AttentionWriter("downstore://bucket/w")
    w.add_attention("probe", _attn(rng), tokens=list("abcde"), step=0, metrics=False)
    with pytest.raises(OSError, match="store unreachable"):
        w.flush()
    spool = w._events._spool
    with pytest.raises(OSError, match="store unreachable"):
        w.close()
    assert os.listdir(spool)  # not uploaded, so not deleted: the part can still be copied by hand
    _Down.up = True


def test_a_gs_url_goes_through_fsspec(monkeypatch, memfs, tmp_path, rng):
    """gs:// is gcsfs in real use (not installed for the tests); here fsspec's registry maps gs:// to its in-memory
    store, so the writer's URL handling, naming and uploads run exactly as for a bucket."""
    monkeypatch.setitem(_registry, "gs", _FakeGCS)
    with AttentionWriter("gs://bucket/g") as w:
        w.add_attention("probe", _attn(rng), tokens=list("abcde"), step=7, metrics=False)
    assert _steps(memfs, "/bucket/g", tmp_path) == [7]


def test_url_errors_are_clear(rng):
    with pytest.raises(ValueError, match="cannot write to 'nosuchscheme://x/y'"):
        AttentionWriter("nosuchscheme://x/y")
    with pytest.raises(ValueError, match="flush_secs must be positive"):
        AttentionWriter("memory://bucket/x", flush_secs=0)
    assert not remote.is_url("runs/exp1") and not remote.is_url("file:///tmp/x")
    assert remote.is_url("s3://b/x") and remote.is_url("simplecache::gs://b/x")


def test_tensorflow_style_s3_endpoint_is_used_for_writing(monkeypatch):
    monkeypatch.delenv("FSSPEC_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("S3_ENDPOINT", "127.0.0.1:9")
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    fs, path = remote.filesystem("s3://bucket/run")
    assert fs.client_kwargs.get("endpoint_url", fs.endpoint_url) == "http://127.0.0.1:9" and path == "bucket/run"
