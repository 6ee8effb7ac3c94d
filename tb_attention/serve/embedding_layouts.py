"""Q/K embedding layouts of one head: computed, aligned from step to step, and cached in memory and on disk.

PCA layouts are computed in the request (milliseconds per head). Nonlinear layouts ("faithful", t-SNE, UMAP) run
in one worker process (spawned on first use, so the arithmetic never competes with TensorBoard's request threads
for the GIL; computed in the calling thread instead if a process cannot be started). Layouts are cached in memory
and on disk (`layout_cache.py`: where, how big, what is trusted), keyed by the batch's fingerprint (run, probe
batch, step and the wall times of its events), a content hash of the layer's queries and keys (so a run
rewritten with other q/k is never served old layouts, also after a restart), layer, head, method and options.
"""

import collections
import hashlib
import json
import logging
import multiprocessing
import os
import threading
from typing import NamedTuple

import numpy as np

from tb_attention.analysis import embedding, embedding_scores
from tb_attention.serve import layout_cache

_log = logging.getLogger(__name__)
# 2: content hash and point count in the key, the key stored in the file; 3: hash of q/k only; 4: scores on a
# sample of queries, layouts on a sample of points beyond embedding.MAX_POINTS (the point count is the sample's)
_CACHE_VERSION = 4
_MEMORY_ITEMS = 4096  # per-head layouts kept in memory (~17 KB each at 2,000 points)
_DIGEST_ITEMS = 4096  # content hashes of decoded layers


class Key(NamedTuple):
    fingerprint: str  # run, batch, step, wall times
    digest: str  # content hash of the layer's q and k
    points: int  # queries + keys: the layout's expected shape is (points, 2)
    layer: int
    head: int
    method: str
    translate: int
    scale: int


class Layouts:
    def __init__(self, batches, logdir, flags=None):
        self._batches = batches  # embedding_batch.BatchReader
        folder, max_bytes = layout_cache.configured(flags)
        self._disk = layout_cache.DiskCache(layout_cache.candidates(logdir, folder), max_bytes)
        self._worker = None  # _Worker, started by the first nonlinear layout
        self.worker_failed = False
        self._lock = threading.Lock()
        self._memory = collections.OrderedDict()
        self._digests = collections.OrderedDict()

    @property
    def cache_dir(self):
        return self._disk.folder

    @cache_dir.setter
    def cache_dir(self, folder):
        self._disk = layout_cache.DiskCache([folder], self._disk.max_bytes)

    # -- cache -----------------------------------------------------------------------------------
    def key(self, ctx, batch, layer, head, method, translate, scale):
        digest, points = self._digest(ctx, batch, layer)
        return Key(batch.fingerprint, digest, points, layer, head, method, int(translate), int(scale))

    def _digest(self, ctx, batch, layer):
        """(content hash, point count) of one decoded layer of a batch, remembered per (fingerprint, layer)."""
        memo = (batch.fingerprint, layer)
        with self._lock:
            if memo in self._digests:
                self._digests.move_to_end(memo)
                return self._digests[memo]
        # q/k only: masks come from the same step's attention (the fingerprint's wall times name it), and reading
        # them for every earlier step of the alignment chain cost a decoded layer per step (~1 s each at 1,000 tokens).
        q, k, q_probe, k_probe = self._batches.qk(ctx, batch, layer)
        h = hashlib.blake2b(digest_size=16)
        for a in (q, k, q_probe, k_probe):
            a = np.ascontiguousarray(a)
            h.update(repr((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
        sample = embedding.point_sample(q.shape[1], k.shape[1])  # the points every layout of this layer has
        value = (h.hexdigest(), int(q.shape[1] + k.shape[1] if sample is None else len(sample[0]) + len(sample[1])))
        with self._lock:
            self._digests[memo] = value
            while len(self._digests) > _DIGEST_ITEMS:
                self._digests.popitem(last=False)
        return value

    @staticmethod
    def _name(key):
        key_json = json.dumps([_CACHE_VERSION, *key])
        return hashlib.sha1(key_json.encode()).hexdigest(), key_json

    def cached(self, key):
        """(xy, info) from memory or disk, or None (also for a damaged, planted or mismatched file)."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        name, key_json = self._name(key)
        value = self._disk.load(name, key_json, key.points)
        if value is None or value[1].get("method") != key.method:
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
        name, key_json = self._name(key)
        self._disk.store(name, key_json, xy, info)

    # -- layouts ---------------------------------------------------------------------------------
    def pca(self, ctx, batch, layer, head, translate, scale, full=True):
        """Aligned PCA layout + scores. Each step's PCA is Procrustes-aligned to the previous common step's
        aligned PCA (a chain from the first step, walked from the latest cached step, so the result does not
        depend on what was cached): a fixed dataset keeps a fixed layout, small changes move points smoothly."""
        key = self.key(ctx, batch, layer, head, "pca", translate, scale)
        hit = self.cached(key)
        if hit is None:
            todo, reference = [batch], None
            for s in reversed([s for s in batch.steps if s < batch.step]):
                prev = self._batches.sibling(ctx, batch, s)
                cached = self.cached(self.key(ctx, prev, layer, head, "pca", translate, scale))
                if cached is not None:
                    reference = cached[0]
                    break
                todo.append(prev)
            for b in reversed(todo):
                h = self._batches.head(ctx, b, layer, head, masks=False)  # PCA reads the points only
                xy, info = embedding.layout(h, "pca", translate, scale, reference=reference)
                info = dict(info, method="pca", aligned=reference is not None)
                self._store(self.key(ctx, b, layer, head, "pca", translate, scale), xy, info)
                reference = xy
            hit = self.cached(key)
        xy, info = hit
        # Scores only for layouts someone looks at; the matrix needs only the 2-D faithfulness (fast path).
        if "faithfulness" not in info or (full and "mixing" not in info):
            h = self._batches.head(ctx, batch, layer, head)
            if full:
                info = dict(info, **embedding.scores(h, xy, translate, scale))
            else:
                rows = embedding_scores.score_rows(len(h.q))  # the same queries as the full scores
                rho = embedding.faithfulness(h, xy[: len(h.q)], xy[len(h.q) :], rows=rows)
                info = dict(info, faithfulness=rho, **embedding_scores.sample_info(len(h.q)))
            self._store(key, xy, info)
        return xy, info

    def nonlinear(self, ctx, batch, layer, head, method, translate, scale):
        key = self.key(ctx, batch, layer, head, method, translate, scale)
        hit = self.cached(key)
        if hit is not None:
            return hit
        base, _ = self.pca(ctx, batch, layer, head, translate, scale, full=False)
        init = None
        if method in ("tsne", "umap"):  # warm start from the previous step's layout when it is known
            earlier = [s for s in batch.steps if s < batch.step]
            if earlier:
                previous = self._batches.sibling(ctx, batch, earlier[-1])
                hit = self.cached(self.key(ctx, previous, layer, head, method, translate, scale))
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
                    self._worker = _Worker()
                return self._worker.call(embedding.compute, *args)
            except (OSError, RuntimeError, EOFError) as e:
                if isinstance(e, embedding.MissingDependencyError):
                    raise
                _log.warning("embedding worker process unavailable (%s); computing in the server thread", e)
                self.worker_failed = True
        return embedding.compute(*args)

    def close(self):
        """Stops the worker process (tests; TensorBoard exits without calling this)."""
        if self._worker is not None:
            self._worker.close()


class _Worker:
    """One spawned process that computes layouts, a daemon: multiprocessing terminates it when TensorBoard exits,
    mid-layout. (A ProcessPoolExecutor would be joined at exit, after its running layout: minutes, for a large
    batch, during which TensorBoard ignores Ctrl+C and SIGTERM.) Calls are serialised: the job runner has one thread."""

    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, os.getpid()), name="tb-attention-layouts", daemon=True)
        self._process.start()
        child.close()
        self._lock = threading.Lock()

    def call(self, fn, *args):
        with self._lock:
            self._conn.send((fn, args))
            ok, value = self._conn.recv()  # EOFError when the process died
        if not ok:
            raise value
        return value

    def close(self):
        self._process.terminate()
        self._conn.close()


def _serve(conn, parent):
    """The worker process: computes what it is sent until the pipe closes."""
    _watch_parent(parent)
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((True, fn(*args)))
        except Exception as e:  # noqa: BLE001 - raised again in the server (MissingDependencyError, damaged data)
            conn.send((False, e))


def _watch_parent(pid):
    """In the worker process: exit when TensorBoard is gone (even if it was killed and could not say so)."""
    import time

    def watch():
        while os.getppid() == pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
