"""Our event-file record reader bounds every length before allocating: a record claiming 2**40 bytes ends the scan
(TensorBoard's own Python reader raises MemoryError on it; docs/reliability.md)."""

import glob
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tb_attention import AttentionWriter
from tb_attention.cli import logged_steps
from tb_attention.format import records


def _logdir(tmp_path, steps=3):
    with AttentionWriter(str(tmp_path)) as w:
        for step in range(steps):
            w.add_attention("p", np.full((1, 1, 2, 2), 0.5, np.float32), tokens=list("ab"), step=step)
    (path,) = glob.glob(str(tmp_path / "events*"))
    return path


def _hostile_record(length=2**40):
    header = struct.pack("<Q", length)
    return header + struct.pack("<I", records._masked_crc(header)) + b"x" * 64


def test_reads_what_the_writer_wrote(tmp_path):
    path = _logdir(tmp_path)
    steps = [e.step for e in records.events(path) if any(v.tag == "p" for v in e.summary.value)]
    assert steps == [0, 1, 2]


def test_a_record_claiming_a_huge_length_ends_the_scan_without_allocating(tmp_path):
    path = _logdir(tmp_path)
    with open(path, "ab") as f:
        f.write(_hostile_record())
    assert logged_steps(str(tmp_path), "p") == {0, 1, 2}
    from tensorboard.backend.event_processing import event_file_loader

    try:  # the reproduction documented in docs/reliability.md: TensorBoard's reader trusts the length
        list(event_file_loader.EventFileLoader(path).Load())
        raised = None
    except MemoryError:
        raised = MemoryError
    assert raised is MemoryError


def test_a_truncated_or_damaged_tail_ends_the_scan(tmp_path):
    path = _logdir(tmp_path)
    data = open(path, "rb").read()
    assert len(list(records.records(data[:-3]))) == len(list(records.records(data))) - 1
    damaged = bytearray(data)
    damaged[-10] ^= 0xFF  # inside the last record's payload
    assert len(list(records.records(bytes(damaged)))) == len(list(records.records(data))) - 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2**64 - 1))
def test_arbitrary_bytes_never_raise(noise, length):
    header = struct.pack("<Q", length)
    for data in (noise, header + struct.pack("<I", records._masked_crc(header)) + noise):
        assert all(isinstance(p, bytes) for p in records.records(data))
