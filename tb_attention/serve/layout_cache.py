"""The on-disk cache of Q/K embedding layouts: where it lives, what it trusts, how big it gets.

Where (the first that applies): `--attention_cache_dir` (TensorBoard flag), `$TB_ATTENTION_CACHE_DIR`,
`<logdir>/.tb-attention-cache/embedding` for a local logdir this process may write, else a local folder named after
the logdir (`$XDG_CACHE_HOME` or `~/.cache`, then the temporary folder). A remote (`s3://`, `gs://`, …) or read-only
logdir is never written to. Nothing is created until the first layout is stored.

Trust: anyone who can write into a logdir can plant files in its cache. So a file is read only if it is a regular
file (never through a symlink, not even a symlinked sub-folder), at most `_MAX_FILE_BYTES`, a plain `.npz` with
exactly the arrays we write, the key it was stored under, and the shape and dtype the request expects. Anything else
is a miss (the layout is recomputed and the file replaced), never an error.

Size: bounded by `--attention_cache_mb` / `$TB_ATTENTION_CACHE_MB` (default 512 MB). When a store takes it past the
bound, the least recently used files are deleted down to 80 % of it.
"""

import hashlib
import io
import json
import logging
import math
import os
import stat
import tempfile
import threading

import numpy as np

_log = logging.getLogger(__name__)
DEFAULT_MAX_MB = 512.0
_MAX_FILE_BYTES = 64 << 20  # a 2-D float32 layout of 8 M points; anything larger was not written by us
_ARRAYS = {"xy", "info", "key"}
_SCALARS = (bool, int, float, str, type(None))


def configured(flags):
    """(folder or None, max bytes) from TensorBoard's flags, else the environment; ValueError on a bad size."""
    folder = getattr(flags, "attention_cache_dir", None) or os.environ.get("TB_ATTENTION_CACHE_DIR") or None
    mb = getattr(flags, "attention_cache_mb", None)
    if mb is None:
        mb = os.environ.get("TB_ATTENTION_CACHE_MB") or DEFAULT_MAX_MB
    try:
        size = float(mb)
    except (TypeError, ValueError):
        raise ValueError(f"the layout cache size must be a number of MB, got {mb!r}") from None
    if not (math.isfinite(size) and size > 0):
        raise ValueError(f"the layout cache size must be a positive number of MB, got {mb!r}")
    return (os.path.expanduser(folder) if folder else None), int(size * (1 << 20))


def is_remote(logdir):
    """Whether TensorBoard reads `logdir` through a URL (s3://, gs://, any fsspec scheme) rather than a local folder."""
    return "://" in logdir and logdir.split("://", 1)[0].split("::")[-1] not in ("", "file")


def candidates(logdir, folder=None):
    """Cache folders to try, in order (none is created here)."""
    if folder:
        return [folder]
    out = []
    if logdir and not is_remote(str(logdir)):
        local = os.path.expanduser(str(logdir))
        cache = os.path.join(local, ".tb-attention-cache")
        # A planted symlink must not send our writes elsewhere; a read-only logdir is left alone.
        if (
            os.path.isdir(local)
            and os.access(local, os.W_OK)
            and not any(map(os.path.islink, (cache, cache + "/embedding")))
        ):
            out.append(os.path.join(cache, "embedding"))
    tag = hashlib.sha1(str(logdir).encode()).hexdigest()[:12]
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    out.append(os.path.join(home, "tb-attention", tag, "embedding"))
    out.append(os.path.join(tempfile.gettempdir(), "tb-attention-cache", tag, "embedding"))
    return out


class DiskCache:
    def __init__(self, folders, max_bytes):
        self.folder = folders[0]
        self._fallbacks = list(folders[1:])
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._bytes = None  # what the folder holds, counted on the first store

    def _path(self, name):
        return os.path.join(self.folder, name[:2], name + ".npz")

    # -- reading ---------------------------------------------------------------------------------
    def load(self, name, key_json, points):
        """(xy float64 [points, 2], info dict), or None when absent, unreadable, planted or of another shape."""
        path = self._path(name)
        data = _read_regular(path)
        if data is None:
            return None
        value = _parse(data, key_json, points)
        if value is None:
            _log.warning("tb-attention: ignoring a damaged or foreign layout cache file %s", path)
            _remove(path)
            return None
        try:
            os.utime(path, follow_symlinks=False)  # least recently *used* goes first when pruning
        except OSError:
            pass
        return value

    # -- writing ---------------------------------------------------------------------------------
    def store(self, name, key_json, xy, info):
        buf = io.BytesIO()
        np.savez(buf, xy=xy.astype(np.float32), info=np.array(json.dumps(info)), key=np.array(key_json))
        body = buf.getvalue()
        while True:
            try:
                self._write(name, body)
                break
            except OSError as e:
                if not self._fallbacks:
                    _log.warning("tb-attention: layout cache not written (%s): %s", self.folder, e)
                    return
                _log.warning(
                    "tb-attention: layout cache folder %s not usable (%s); using %s", self.folder, e, self._fallbacks[0]
                )
                self.folder, self._bytes = self._fallbacks.pop(0), None
        with self._lock:
            if self._bytes is None:
                self._bytes = sum(size for _, size, _ in _files(self.folder))
            else:
                self._bytes += len(body)
            over = self._bytes > self.max_bytes
        if over:
            self.prune()

    def _write(self, name, body):
        sub = os.path.dirname(self._path(name))
        os.makedirs(self.folder, exist_ok=True)
        try:
            os.mkdir(sub)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(sub).st_mode):
            raise OSError(f"{sub} is not a folder (a symlink?)")
        tmp = os.path.join(sub, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(tmp, self._path(name))  # readers never see half a file; replaces a planted link, not its target
        except BaseException:
            _remove(tmp)
            raise

    def prune(self):
        """Deletes the least recently used files until the folder holds at most 80 % of max_bytes."""
        with self._lock:
            files = sorted(_files(self.folder))
            total = sum(size for _, size, _ in files)
            for _, size, path in files:
                if total <= 0.8 * self.max_bytes:
                    break
                if _remove(path):
                    total -= size
            self._bytes = total


def _read_regular(path):
    """The bytes of `path` if it is a regular file reached without symlinks and of a plausible size."""
    try:
        if os.path.islink(os.path.dirname(path)):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE_BYTES:
            return None
        return f.read(_MAX_FILE_BYTES + 1)


def _parse(data, key_json, points):
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if set(f.files) != _ARRAYS:
                return None
            xy, info, key = f["xy"], f["info"], f["key"]
            if key.shape != () or str(key) != key_json or info.shape != () or info.dtype.kind != "U":
                return None
            if xy.dtype != np.float32 or xy.shape != (points, 2) or not np.isfinite(xy).all():
                return None
            info = json.loads(str(info))
    except Exception:  # noqa: BLE001 - a damaged file (truncated zip, bad header, bad JSON...) is a miss
        return None
    if not isinstance(info, dict) or not all(isinstance(k, str) and isinstance(v, _SCALARS) for k, v in info.items()):
        return None
    return xy.astype(np.float64), info


def _files(folder):
    """[(mtime, size, path)] of the regular `.npz` files one level down, no link followed."""
    out: list = []
    try:
        subs = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for sub in subs:
        try:
            for e in os.scandir(sub.path):
                if e.name.endswith(".npz") and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            continue
    return out


def _remove(path):
    try:
        os.unlink(path)  # unlink removes a link itself, never what it points to
        return True
    except OSError:
        return False
