"""Event files in object storage (`s3://`, `gs://`, any fsspec URL) without re-uploading a growing file.

Object stores cannot append. TensorBoard's TF-free S3 writer therefore re-uploads the whole event file on every
flush (O(n²) bytes over a run) and gcsfs overwrites. Here records are spooled to a local file, and each finished
part is uploaded once, as a new immutable object:

    <run>/events.out.tfevents.<start:010d>.<host>.<pid>.<n>.part<seq:08d>

Parts of one writer share the prefix and sort in write order. That matters for TensorBoard's Python loader, which
reads a run's event files in name order and does not go back to a file once it has moved past it. Each part is a
complete event file and starts with its own `file_version` record. A part is uploaded when
  - `flush()` or `close()` is called,
  - `flush_secs` have passed since its first record (a timer thread does it while training runs), or
  - it reaches `part_bytes`.
So a crash (kill -9, lost node) loses at most the records added since the last upload. On local disk there is at
most the open part plus parts whose upload failed and will be retried, `max_spool_bytes` in all; past that,
writing fails with OSError rather than filling the disk.

Credentials and endpoints come from the storage library's usual places: `AWS_*`/`AWS_ENDPOINT_URL` (botocore),
`FSSPEC_<PROTOCOL>_<KWARG>` (fsspec), Google's ADC (gcsfs). TensorBoard's own `S3_ENDPOINT` is honoured too, so
the writer and `tensorboard --logdir s3://…` can share one environment.
"""

import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time

from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

_log = logging.getLogger(__name__)
_writer_ids = itertools.count()  # tells apart writers of one process that start in the same second


def is_url(target):
    """Whether `target` names object storage (or any fsspec filesystem) rather than a local folder."""
    if not isinstance(target, str) or "://" not in target:
        return False
    return target.split("://", 1)[0].split("::")[-1] not in ("", "file", "local")


def filesystem(url, storage_options=None):
    """(fsspec filesystem, path without the scheme) for `url`; raises ValueError with the package to install."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency of the [s3]/[gcs] extras
        raise ValueError(f"{url!r} needs fsspec: pip install 'tb-attention[s3]' (or [gcs])") from None
    options = dict(storage_options or {})
    protocol = url.split("://", 1)[0].split("::")[-1]
    if protocol in ("s3", "s3a") and "endpoint_url" not in options and "client_kwargs" not in options:
        endpoint = os.environ.get("FSSPEC_S3_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT")
        if endpoint:
            if "://" not in endpoint:  # TensorFlow's form: host:port, with S3_USE_HTTPS choosing the scheme
                https = os.environ.get("S3_USE_HTTPS", "1") not in ("0", "false")
                endpoint = ("https://" if https else "http://") + endpoint
            options["endpoint_url"] = endpoint
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(protocol)
        hint = f"pip install 'tb-attention[{extra}]'" if extra else "install the fsspec implementation for it"
        raise ValueError(f"cannot write to {url!r}: {e} ({hint})") from None
    except ValueError as e:
        raise ValueError(f"cannot write to {url!r}: {e}") from None
    return fs, path.rstrip("/")


class RemoteEventFileWriter:
    """What `EventFileWriter` offers AttentionWriter (add_event, flush, close, get_logdir), for a URL."""

    def __init__(
        self,
        url,
        *,
        flush_secs=10,
        part_bytes=64 << 20,
        max_spool_bytes=1 << 30,
        spool_dir=None,
        storage_options=None,
    ):
        if not flush_secs or flush_secs <= 0:
            raise ValueError(f"flush_secs must be positive for a remote logdir, got {flush_secs!r}")
        if part_bytes <= 0 or max_spool_bytes < part_bytes:
            raise ValueError("need 0 < part_bytes <= max_spool_bytes")
        self._url = url
        self._fs, self._root = filesystem(url, storage_options)
        self._flush_secs = float(flush_secs)
        self._part_bytes = int(part_bytes)
        self._max_spool = int(max_spool_bytes)
        self._spool = tempfile.mkdtemp(prefix="tb-attention-spool-", dir=spool_dir)
        # TensorBoard's own event file name (start time, host, pid, a per-process number), plus .part<seq>.
        start, host, pid = int(time.time()), socket.gethostname(), os.getpid()
        self._prefix = f"events.out.tfevents.{start:010d}.{host}.{pid}.{next(_writer_ids)}"
        self._seq = 0
        self._lock = threading.Lock()  # the open part and the queue of finished parts
        self._upload_lock = threading.Lock()  # uploads run one at a time, in order
        self._part = None  # (local path, object path, RecordWriter, time of first record)
        self._part_size = 0
        self._pending = []  # [(local path, object path, size)], oldest first
        self._pending_bytes = 0
        self._last_error = None
        self._closed = False
        self._wake = threading.Event()
        self._timer = threading.Thread(target=self._periodic, name="tb-attention-upload", daemon=True)
        self._timer.start()

    def get_logdir(self):
        return self._url

    @property
    def uploaded_parts(self):
        """How many parts have been uploaded (tests)."""
        return self._seq - len(self._pending) - (self._part is not None)

    def add_event(self, event):
        if not isinstance(event, event_pb2.Event):
            raise TypeError(f"expected an event_pb2.Event, got {type(event).__name__}")
        data = event.SerializeToString()
        with self._lock:
            if self._closed:
                raise OSError(f"the writer for {self._url} is closed")
            if self._part is None:
                self._open_part()
            assert self._part is not None
            self._part[2].write(data)
            self._part[2].flush()  # to the OS: after a kill -9 the spooled part is still a readable event file
            self._part_size += len(data) + 16  # the record's length, two CRCs
            full = self._part_size >= self._part_bytes
            if full:
                self._seal()
        if full:
            self._upload(raise_errors=False)
            if self._pending_bytes > self._max_spool - self._part_bytes:
                raise OSError(
                    f"cannot upload event file parts to {self._url} ({self._last_error}); "
                    f"{self._pending_bytes} bytes wait in {self._spool}, the limit is max_spool_bytes={self._max_spool}"
                )

    def flush(self):
        """Uploads everything added so far; raises OSError when that fails (parts stay spooled for a retry)."""
        with self._lock:
            self._seal()
        self._upload(raise_errors=True)

    def close(self):
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
            self._wake.set()
            if not self._pending:
                shutil.rmtree(self._spool, ignore_errors=True)
            else:
                _log.error(
                    "tb-attention: %d event file part(s) not uploaded, kept in %s", len(self._pending), self._spool
                )

    # -- internals -------------------------------------------------------------------------------
    def _open_part(self):
        name = f"{self._prefix}.part{self._seq:08d}"
        self._seq += 1
        local = os.path.join(self._spool, name)
        records = RecordWriter(open(local, "wb"))
        header = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        header.source_metadata.writer = "tb_attention.write.remote"
        data = header.SerializeToString()
        records.write(data)
        self._part = (local, f"{self._root}/{name}", records, time.monotonic())
        self._part_size = len(data) + 16

    def _seal(self):
        """Closes the open part (if it holds anything) and queues it for upload. Caller holds self._lock."""
        if self._part is None:
            return
        local, remote, records, _ = self._part
        records.close()
        self._pending.append((local, remote, self._part_size))
        self._pending_bytes += self._part_size
        self._part, self._part_size = None, 0

    def _upload(self, raise_errors):
        with self._upload_lock:
            while True:
                with self._lock:
                    if not self._pending:
                        self._last_error = None
                        return
                    local, remote, size = self._pending[0]
                try:
                    # One PUT (multipart beyond the library's threshold): the object appears whole or not at all.
                    self._fs.put_file(local, remote)
                except Exception as e:  # noqa: BLE001 - any storage error: keep the part, retry later
                    self._last_error = f"{type(e).__name__}: {e}"
                    _log.warning("tb-attention: upload of %s failed (%s); will retry", remote, self._last_error)
                    if raise_errors:
                        raise OSError(f"cannot upload {remote}: {self._last_error}") from e
                    return
                os.remove(local)
                with self._lock:
                    self._pending.pop(0)
                    self._pending_bytes -= size

    def _periodic(self):
        """Uploads a part once it is flush_secs old, and retries failed uploads, until close()."""
        while not self._wake.wait(min(1.0, self._flush_secs / 4)):
            with self._lock:
                due = self._part is not None and time.monotonic() - self._part[3] >= self._flush_secs
                if due:
                    self._seal()
                retry = bool(self._pending)
            if retry:
                self._upload(raise_errors=False)
