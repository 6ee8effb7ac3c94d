"""TensorBoard's TF-free event reader and writer compute CRC32C in pure Python (~5 MB/s): seconds of GIL per
attention step when writing, minutes when the Python loader reads a large logdir. Both call the module-level
`crc32c` of TensorBoard's stub, so swapping in google-crc32c's C implementation there speeds up both."""

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
        from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as stub
    except ImportError:
        _log.warning("google-crc32c not installed: TensorBoard event files are checksummed in pure Python (slow)")
        return
    # Only swap if both agree, so a change in TensorBoard can never corrupt or reject event files.
    probe = b"tb-attention crc probe"
    if getattr(stub, "crc32c", None) is not None and stub.crc32c(probe) == google_crc32c.value(probe):
        stub.crc32c = google_crc32c.value
