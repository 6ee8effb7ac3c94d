"""Q/K embedding layouts of one head: computed, aligned from step to step, and cached in memory and on disk.

PCA layouts are computed in the request (milliseconds per head). Nonlinear layouts ("faithful", t-SNE, UMAP) run
in one worker process (spawned on first use, so the arithmetic never competes with TensorBoard's request threads
for the GIL; computed in the calling thread instead if a process cannot be started). Layouts are cached on disk
next to the logs (`<logdir>/.tb-attention-cache/embedding/`, or a temporary folder when the logdir is not
writable or not known), keyed by the batch's fingerprint (run, probe batch, step and the wall times of its
events, so a rewritten logdir never reuses stale layouts), layer, head, method and options.
"""

import collections
import concurrent.futures
import hashlib
import io
import json
import logging
import multiprocessing
import os
import tempfile
import threading

import numpy as np

from tb_attention.analysis import embedding

_log = logging.getLogger(__name__)
_CACHE_VERSION = 1
_MEMORY_ITEMS = 4096  # per-head layouts kept in memory (~17 KB each at 2,000 points)


class Layouts:
    def __init__(self, batches, logdir):
        self._batches = batches  # embedding_batch.BatchReader
        self.cache_dir = _cache_dir(logdir)
        self._worker = None  # ProcessPoolExecutor(1), started by the first nonlinear layout
        self.worker_failed = False
        self._lock = threading.Lock()
        self._memory = collections.OrderedDict()

    # -- cache -----------------------------------------------------------------------------------
    @staticmethod
    def key(batch, layer, head, method, translate, scale):
        return (batch.fingerprint, layer, head, method, int(translate), int(scale))

    def _path(self, key):
        name = hashlib.sha1(json.dumps([_CACHE_VERSION, *key]).encode()).hexdigest()
        return os.path.join(self.cache_dir, name[:2], name + ".npz")

    def cached(self, key):
        """(xy, info) from memory or disk, or None."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        try:
            with np.load(self._path(key)) as f:
                value = (f["xy"].astype(np.float64), json.loads(str(f["info"])))
        except (OSError, ValueError, KeyError):
            return None
        self._remember(key, value)
        return value

    def _remember(self, key, value):
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > _MEMORY_ITEMS:
                self._memory.popitem(last=False)

    def _store(self, key, xy, info):
        self._remember(key, (xy, info))
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            buf = io.BytesIO()
            np.savez(buf, xy=xy.astype(np.float32), info=np.array(json.dumps(info)))
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, path)  # readers never see half a file
        except OSError as e:
            _log.warning("embedding cache not written (%s): %s", path, e)

    # -- layouts ---------------------------------------------------------------------------------
    def pca(self, ctx, batch, layer, head, translate, scale, full=True):
        """Aligned PCA layout + scores. Each step's PCA is Procrustes-aligned to the previous common step's
        aligned PCA (a chain from the first step, walked from the latest cached step, so the result does not
        depend on what was cached): a fixed dataset keeps a fixed layout, small changes move points smoothly."""
        key = self.key(batch, layer, head, "pca", translate, scale)
        hit = self.cached(key)
        if hit is None:
            todo, reference = [batch], None
            for s in reversed([s for s in batch.steps if s < batch.step]):
                prev = self._batches.sibling(ctx, batch, s)
                cached = self.cached(self.key(prev, layer, head, "pca", translate, scale))
                if cached is not None:
                    reference = cached[0]
                    break
                todo.append(prev)
            for b in reversed(todo):
                h = self._batches.head(ctx, b, layer, head)
                xy, info = embedding.layout(h, "pca", translate, scale, reference=reference)
                info = dict(info, method="pca", aligned=reference is not None)
                self._store(self.key(b, layer, head, "pca", translate, scale), xy, info)
                reference = xy
            hit = self.cached(key)
        xy, info = hit
        # Scores only for layouts someone looks at; the matrix needs only the 2-D faithfulness (fast path).
        if "faithfulness" not in info or (full and "mixing" not in info):
            h = self._batches.head(ctx, batch, layer, head)
            if full:
                info = dict(info, **embedding.scores(h, xy, translate, scale))
            else:
                info = dict(info, faithfulness=embedding.faithfulness(h, xy[: len(h.q)], xy[len(h.q) :]))
            self._store(key, xy, info)
        return xy, info

    def nonlinear(self, ctx, batch, layer, head, method, translate, scale):
        key = self.key(batch, layer, head, method, translate, scale)
        hit = self.cached(key)
        if hit is not None:
            return hit
        base, _ = self.pca(ctx, batch, layer, head, translate, scale, full=False)
        init = None
        if method in ("tsne", "umap"):  # warm start from the previous step's layout when it is known
            earlier = [s for s in batch.steps if s < batch.step]
            if earlier:
                previous = self._batches.sibling(ctx, batch, earlier[-1])
                hit = self.cached(self.key(previous, layer, head, method, translate, scale))
                init = None if hit is None else hit[0]
        h = self._batches.head(ctx, batch, layer, head)
        # layout() recomputes this step's PCA and aligns it to `base`, i.e. to itself: the same aligned PCA.
        xy, info = self._compute(h, method, translate, scale, base, init)
        info = dict(info, method=method, aligned=True, warm_start=init is not None)
        self._store(key, xy, info)
        return xy, info

    def _compute(self, h, method, translate, scale, reference, init):
        args = (h.q, h.k, h.q_probe, h.k_probe, [g[2] for g in h.groups], method, translate, scale, reference, init)
        if not self.worker_failed:
            try:
                if self._worker is None:
                    self._worker = concurrent.futures.ProcessPoolExecutor(
                        1,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_watch_parent,
                        initargs=(os.getpid(),),
                    )
                return self._worker.submit(embedding.compute, *args).result()
            except (OSError, RuntimeError, concurrent.futures.process.BrokenProcessPool) as e:
                if isinstance(e, embedding.MissingDependencyError):
                    raise
                _log.warning("embedding worker process unavailable (%s); computing in the server thread", e)
                self.worker_failed = True
        return embedding.compute(*args)

    def close(self):
        """Stops the worker process (tests; TensorBoard exits without calling this)."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)


def _watch_parent(pid):
    """In the worker process: exit when TensorBoard is gone (even if it was killed and could not say so)."""
    import time

    def watch():
        while os.getppid() == pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _cache_dir(logdir):
    """`<logdir>/.tb-attention-cache/embedding` when the logdir is a writable local folder, else a temporary
    folder named after the logdir."""
    candidates = []
    if logdir and os.path.isdir(os.path.expanduser(str(logdir))):
        candidates.append(os.path.join(os.path.expanduser(str(logdir)), ".tb-attention-cache", "embedding"))
    tag = hashlib.sha1(str(logdir).encode()).hexdigest()[:12]
    candidates.append(os.path.join(tempfile.gettempdir(), "tb-attention-cache", tag, "embedding"))
    for path in candidates:
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, f".write-test-{os.getpid()}")
            with open(probe, "wb"):
                pass
            os.remove(probe)
            return path
        except OSError:
            continue
    return candidates[-1]
