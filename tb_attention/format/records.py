"""Reads the records of a TensorBoard event file with every length bounded before anything is allocated.

TensorBoard's own readers trust a record's length field once its 4-byte header checksum matches: a record that
claims 2**40 bytes makes the Python loader raise MemoryError and the Rust data server abort (docs/reliability.md).
Our readers (the checkpoint CLI's resume scan) use this instead: a length beyond the bytes left in the file, or a
checksum mismatch, ends the scan as a truncated or damaged tail does.
"""

import struct

import google_crc32c
from tensorboard.compat.proto import event_pb2

_HEADER = struct.Struct("<QI")  # length, masked CRC-32C of the length
_FOOTER = struct.Struct("<I")  # masked CRC-32C of the data
MAX_RECORD_BYTES = 1 << 31  # TensorBoard's writer never frames more; far above one probe step


def _masked_crc(data):
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(data):
    """The record payloads of an event file's bytes, in order; stops at the first incomplete or damaged record."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, length_crc = _HEADER.unpack_from(data, pos)
        if _masked_crc(data[pos : pos + 8]) != length_crc:
            return
        start = pos + _HEADER.size
        end = start + length
        if length > MAX_RECORD_BYTES or end + _FOOTER.size > len(data):
            return  # a length the file cannot hold: damaged or still being written
        payload = data[start:end]
        if _masked_crc(payload) != _FOOTER.unpack_from(data, end)[0]:
            return
        yield payload
        pos = end + _FOOTER.size


def events(path):
    """The `Event`s of the event file at `path` that can be read safely (see `records`)."""
    with open(path, "rb") as f:
        data = f.read()
    for payload in records(data):
        try:
            yield event_pb2.Event.FromString(payload)
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on damaged payloads
            return
