"""TensorBoard's TF-free record writer computes CRC32C in pure Python (~5 MB/s), which would hold the GIL for
seconds per attention step. Swap in the C implementation from google-crc32c when it is available."""

import logging

_log = logging.getLogger(__name__)
_done = False


def install():
    global _done
    if _done:
        return
    _done = True
    try:
        import google_crc32c
        from tensorboard.summary.writer import record_writer
    except ImportError:
        _log.warning("google-crc32c not installed: TensorBoard event writing uses pure-Python CRC32C (slow)")
        return
    original = getattr(record_writer, "masked_crc32c", None)
    if original is None:
        return

    def masked_crc32c(data):
        x = google_crc32c.value(data)
        return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    # Only swap if both agree, so a change in TensorBoard can never corrupt event files.
    probe = b"tb-attention crc probe"
    if masked_crc32c(probe) == original(probe):
        record_writer.masked_crc32c = masked_crc32c
