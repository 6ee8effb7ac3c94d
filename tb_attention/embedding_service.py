"""HTTP routes of the joint query-key embedding (docs/http_api.md, docs/embedding.md) and their job runner.

PCA layouts are computed in the request (milliseconds per head). Nonlinear layouts ("faithful", t-SNE, UMAP) are
queued on one background thread (a pool of size 1) that reads the data and hands the arithmetic to one worker
process (spawned on first use, so it never competes with TensorBoard's request threads for the GIL; computed in
the thread instead if a process cannot be started); they report progress, and are cached on disk next to the logs
(`<logdir>/.tb-attention-cache/embedding/`, or a temporary folder when the logdir is not writable or not known),
keyed by run, probe batch, step (and the wall times of its events, so a rewritten logdir never reuses stale
layouts), layer, head, method and options. A request never waits for a nonlinear layout: it gets `202` with the
job's progress and asks again.
"""

import collections
import concurrent.futures
import hashlib
import importlib.util
import io
import json
import logging
import multiprocessing
import os
import re
import tempfile
import threading

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from werkzeug import wrappers

from tb_attention import codec, embedding, metadata
from tb_attention.params import int_param, param

_log = logging.getLogger(__name__)
_CACHE_VERSION = 1
_MEMORY_ITEMS = 4096  # per-head layouts kept in memory (~17 KB each at 2,000 points)
_LAYER_ITEMS = 16  # decoded layers (q/k of a whole probe batch: ~3 MB for MiniLM x 1,000 tokens) kept in memory
_MANIFEST_ITEMS = 4096


def _flag(request, name, default=True):
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if value not in ("0", "1", "true", "false"):
        raise errors.InvalidArgumentError(f"parameter {name!r} must be 0 or 1, got {value[:40]!r}")
    return value in ("1", "true")


def _method(request):
    method = request.args.get("method") or "pca"
    if method not in embedding.METHODS:
        raise errors.InvalidArgumentError(f"parameter 'method' must be one of {list(embedding.METHODS)}")
    if not available(method):
        raise errors.InvalidArgumentError(_MISSING[method])
    return method


_MISSING = {
    "tsne": "t-SNE needs scikit-learn on the TensorBoard server: pip install 'tb-attention[embedding]'",
    "umap": "UMAP needs umap-learn on the TensorBoard server: pip install 'tb-attention[umap]' (or umap-learn)",
}


def available(method):
    if method == "tsne":
        return importlib.util.find_spec("sklearn") is not None
    if method == "umap":
        return importlib.util.find_spec("umap") is not None
    return True


def _respond(request, body, content_type, code=200):
    return http_util.Respond(request, body, content_type, code=code)


class _Batch:
    """A probe batch at one step: member probes in order, their datums, manifests."""

    def __init__(self, run, tag, members, datums, manifests, per_member):
        self.run, self.tag, self.members, self.datums, self.manifests = run, tag, members, datums, manifests
        self.step = datums[0].step
        self.per_member = per_member  # [{step: datum}] per member: every step, for the alignment chain
        common = set(per_member[0])
        for d in per_member[1:]:
            common &= set(d)
        self.steps = sorted(common)
        m0 = manifests[0]
        self.num_layers, self.num_heads = m0["num_layers"], m0["num_heads"]
        self.num_kv_heads, self.d_head = m0.get("num_kv_heads"), m0.get("d_head")
        self.fingerprint = hashlib.sha1(
            json.dumps([run, tag, members, [round(d.wall_time, 6) for d in datums]]).encode()
        ).hexdigest()[:16]


class _Job:
    def __init__(self):
        self.state, self.progress, self.message, self.done = "queued", 0.0, "", threading.Event()


class EmbeddingRoutes:
    """Route handlers; `plugin` is the AttentionPlugin (its data provider and sampling hint)."""

    def __init__(self, plugin, context):
        self._plugin = plugin
        self._provider = context.data_provider
        self._cache_dir = _cache_dir(getattr(context, "logdir", None))
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tb-attention-embedding")
        self._worker = None  # ProcessPoolExecutor(1), started by the first nonlinear job
        self._worker_failed = False
        self._jobs = {}
        self._lock = threading.Lock()
        self._memory = collections.OrderedDict()
        self._layers = collections.OrderedDict()
        self._manifests = collections.OrderedDict()

    def apps(self):
        return {
            "/embedding_batches": self._serve_batches,
            "/embedding_info": self._serve_info,
            "/embedding": self._serve_embedding,
            "/embedding_matrix": self._serve_matrix,
        }

    # -- reading -------------------------------------------------------------------------------
    def _probes(self, ctx, eid):
        listing = self._provider.list_blob_sequences(ctx, experiment_id=eid, plugin_name=metadata.PLUGIN_NAME)
        probes = {}
        for run, tags in listing.items():
            for tag, series in tags.items():
                try:
                    content = metadata.parse_plugin_content(series.plugin_content)
                except metadata.UnsupportedVersionError:
                    continue
                if content is not None and content.get("kind") == metadata.KIND_PROBE:
                    probes.setdefault(run, []).append(tag)
        return probes

    def _members(self, ctx, eid, run, tag):
        probes = self._probes(ctx, eid).get(run)
        if probes is None:
            raise errors.NotFoundError(f"no attention probes in run {run!r}")
        pattern = re.compile(re.escape(tag) + r"/(\d+)$")
        numbered = sorted((int(m.group(1)), t) for t in probes if (m := pattern.match(t)))
        if numbered:
            return [t for _, t in numbered]
        if tag in probes:
            return [tag]
        raise errors.NotFoundError(f"no probe or probe batch {tag!r} in run {run!r}")

    def _datums(self, ctx, eid, run, members):
        series = self._provider.read_blob_sequences(
            ctx, experiment_id=eid, plugin_name=metadata.PLUGIN_NAME, downsample=self._plugin._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=members),
        )
        per_member = []
        for tag in members:
            by_step = {}
            for d in series.get(run, {}).get(tag, []):
                by_step.setdefault(d.step, d)
            per_member.append(by_step)
        return per_member

    def _manifest(self, ctx, datum):
        key = datum.values[metadata.MANIFEST_INDEX].blob_key
        with self._lock:
            if key in self._manifests:
                return self._manifests[key]
        try:
            manifest = json.loads(self._provider.read_blob(ctx, blob_key=key))
            expected = metadata.blob_count(manifest)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise errors.PublicError(f"unreadable step manifest: {e!r}") from None
        if len(datum.values) != expected:
            raise errors.PublicError(f"step has {len(datum.values)} blobs, its manifest describes {expected}")
        self._remember(self._manifests, key, manifest, _MANIFEST_ITEMS)
        return manifest

    def _batch(self, ctx, eid, run, tag, step, members=None, per_member=None):
        if members is None:
            members = self._members(ctx, eid, run, tag)
            per_member = self._datums(ctx, eid, run, members)
        missing = [t for t, d in zip(members, per_member) if step not in d]
        if missing:
            raise errors.NotFoundError(f"step {step} is not loaded for {len(missing)} probe(s) of {tag!r}, e.g. {missing[0]!r}")
        datums = [d[step] for d in per_member]
        manifests = [self._manifest(ctx, d) for d in datums]
        shapes = {(m["num_layers"], m["num_heads"], m.get("num_kv_heads"), m.get("d_head"), m["has_qk"]) for m in manifests}
        if len(shapes) != 1:
            raise errors.InvalidArgumentError(f"the probes of {tag!r} disagree on layers/heads/d_head: {sorted(map(str, shapes))}")
        if not manifests[0]["has_qk"]:
            raise errors.NotFoundError(f"queries/keys were not logged for {tag!r} at step {step}")
        return _Batch(run, tag, members, datums, manifests, per_member)

    def _sibling(self, ctx, batch, step):
        """The same batch at another step (no new listing)."""
        return self._batch(ctx, None, batch.run, batch.tag, step, batch.members, batch.per_member)

    def _layer(self, ctx, batch, layer):
        """(q [H, Nq, D], k [Hkv, Nk, D], q_probe, k_probe, masks) of one layer over the batch."""
        key = ("layer", batch.fingerprint, layer)
        with self._lock:
            if key in self._layers:
                self._layers.move_to_end(key)
                return self._layers[key]
        qs, ks, masks = [], [], []
        try:
            for datum in batch.datums:
                blobs = datum.values
                qk_ref = blobs[metadata.qk_index(layer, batch.num_layers)]
                _, arrays = codec.unpack(self._provider.read_blob(ctx, blob_key=qk_ref.blob_key))
                attn_ref = blobs[metadata.attention_index(layer)]
                attn = codec.decode_attention(self._provider.read_blob(ctx, blob_key=attn_ref.blob_key))
                qs.append(np.asarray(arrays["queries"], np.float32))
                ks.append(np.asarray(arrays["keys"], np.float32))
                masks.append((attn > 0).any(0))  # keys a query may attend to: causal/padding masks are exact zeros
        except (ValueError, KeyError) as e:
            raise errors.PublicError(f"layer {layer}: {e}") from None
        q_probe = np.concatenate([np.full(q.shape[1], i) for i, q in enumerate(qs)])
        k_probe = np.concatenate([np.full(k.shape[1], i) for i, k in enumerate(ks)])
        value = (np.concatenate(qs, 1), np.concatenate(ks, 1), q_probe, k_probe, masks)
        self._remember(self._layers, key, value, _LAYER_ITEMS)
        return value

    def _head(self, ctx, batch, layer, head):
        q, k, q_probe, k_probe, masks = self._layer(ctx, batch, layer)
        group = q.shape[0] // k.shape[0]
        return embedding.Head(q[head], k[head // group], q_probe, k_probe, masks)

    # -- caches --------------------------------------------------------------------------------
    def _remember(self, store, key, value, limit):
        with self._lock:
            store[key] = value
            store.move_to_end(key)
            while len(store) > limit:
                store.popitem(last=False)

    def _cache_key(self, batch, layer, head, method, translate, scale):
        return (batch.fingerprint, layer, head, method, int(translate), int(scale))

    def _cache_path(self, key):
        name = hashlib.sha1(json.dumps([_CACHE_VERSION, *key]).encode()).hexdigest()
        return os.path.join(self._cache_dir, name[:2], name + ".npz")

    def _cached(self, key):
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        path = self._cache_path(key)
        try:
            with np.load(path) as f:
                value = (f["xy"].astype(np.float64), json.loads(str(f["info"])))
        except (OSError, ValueError, KeyError):
            return None
        self._remember(self._memory, key, value, _MEMORY_ITEMS)
        return value

    def _store(self, key, xy, info, persist=True):
        self._remember(self._memory, key, (xy, info), _MEMORY_ITEMS)
        if not persist:
            return
        path = self._cache_path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            buf = io.BytesIO()
            np.savez(buf, xy=xy.astype(np.float32), info=np.array(json.dumps(info)))
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, path)
        except OSError as e:
            _log.warning("embedding cache not written (%s): %s", path, e)

    # -- layouts -------------------------------------------------------------------------------
    def _pca(self, ctx, batch, layer, head, translate, scale, full=True):
        """Aligned PCA layout + scores. Each step's PCA is Procrustes-aligned to the previous common step's
        aligned PCA (a chain from the first step, walked from the latest cached step, so the result does not
        depend on what was cached): a fixed dataset keeps a fixed layout, small changes move points smoothly."""
        key = self._cache_key(batch, layer, head, "pca", translate, scale)
        hit = self._cached(key)
        if hit is None:
            todo, reference = [batch], None
            for s in reversed([s for s in batch.steps if s < batch.step]):
                prev = self._sibling(ctx, batch, s)
                cached = self._cached(self._cache_key(prev, layer, head, "pca", translate, scale))
                if cached is not None:
                    reference = cached[0]
                    break
                todo.append(prev)
            for b in reversed(todo):
                h = self._head(ctx, b, layer, head)
                xy, info = embedding.layout(h, "pca", translate, scale, reference=reference)
                info = dict(info, method="pca", aligned=reference is not None)
                self._store(self._cache_key(b, layer, head, "pca", translate, scale), xy, info)
                reference = xy
            hit = self._cached(key)
        xy, info = hit
        # Scores only for layouts someone looks at; the matrix needs only the 2-D faithfulness (fast path).
        if "faithfulness" not in info or (full and "mixing" not in info):
            h = self._head(ctx, batch, layer, head)
            if full:
                info = dict(info, **embedding.scores(h, xy, translate, scale))
            else:
                info = dict(info, faithfulness=embedding.faithfulness(h, xy[: len(h.q)], xy[len(h.q):]))
            self._store(key, xy, info)
        return xy, info

    def _nonlinear(self, ctx, batch, layer, head, method, translate, scale, progress=None):
        key = self._cache_key(batch, layer, head, method, translate, scale)
        hit = self._cached(key)
        if hit is not None:
            return hit
        base, _ = self._pca(ctx, batch, layer, head, translate, scale, full=False)
        init = None
        if method in ("tsne", "umap"):  # warm start from the previous step's layout when it is known
            earlier = [s for s in batch.steps if s < batch.step]
            if earlier:
                hit = self._cached(self._cache_key(self._sibling(ctx, batch, earlier[-1]), layer, head, method,
                                                   translate, scale))
                init = None if hit is None else hit[0]
        h = self._head(ctx, batch, layer, head)
        # layout() recomputes this step's PCA and aligns it to `base`, i.e. to itself: the same aligned PCA.
        xy, info = self._compute(h, method, translate, scale, base, init)
        info = dict(info, method=method, aligned=True, warm_start=init is not None)
        self._store(key, xy, info)
        return xy, info

    def _compute(self, h, method, translate, scale, reference, init):
        args = (h.q, h.k, h.q_probe, h.k_probe, [g[2] for g in h.groups], method, translate, scale, reference, init)
        if not self._worker_failed:
            try:
                if self._worker is None:
                    self._worker = concurrent.futures.ProcessPoolExecutor(
                        1, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent,
                        initargs=(os.getpid(),),
                    )
                return self._worker.submit(embedding.compute, *args).result()
            except (OSError, RuntimeError, concurrent.futures.process.BrokenProcessPool) as e:
                if isinstance(e, embedding.MissingDependencyError):
                    raise
                _log.warning("embedding worker process unavailable (%s); computing in the server thread", e)
                self._worker_failed = True
        return embedding.compute(*args)

    def close(self):
        """Stops the worker process (tests; TensorBoard exits without calling this)."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    # -- jobs ----------------------------------------------------------------------------------
    def _submit(self, job_key, fn):
        with self._lock:
            job = self._jobs.get(job_key)
            if job is not None and job.state in ("queued", "running"):
                return job
            if len(self._jobs) > 1024:  # forget finished jobs (their results are in the cache)
                self._jobs = {k: v for k, v in self._jobs.items() if v.state in ("queued", "running")}
            job = _Job()
            self._jobs[job_key] = job

        def run():
            job.state = "running"
            try:
                fn(job)
                job.state, job.progress = "done", 1.0
            except errors.PublicError as e:
                job.state, job.message = "error", str(e)
            except embedding.MissingDependencyError as e:
                job.state, job.message = "error", str(e)
            except Exception as e:  # noqa: BLE001 - reported to the client as a message, logged here
                _log.exception("embedding job %s failed", job_key)
                job.state, job.message = "error", f"layout failed: {type(e).__name__}: {e}"
            finally:
                job.done.set()

        self._pool.submit(run)
        return job

    def _pending(self, request, job):
        if job.state == "error":
            with self._lock:
                self._jobs = {k: v for k, v in self._jobs.items() if v is not job}  # a retry starts afresh
            return _respond(request, job.message, "text/plain", code=500)
        body = {"state": job.state, "progress": round(job.progress, 3)}
        return _respond(request, body, "application/json", code=202)

    def wait(self, timeout=60):
        """Waits for every queued job (tests and benchmarks)."""
        for job in list(self._jobs.values()):
            job.done.wait(timeout)

    # -- routes --------------------------------------------------------------------------------
    def _ctx(self, request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _common(self, request):
        ctx, eid = self._ctx(request)
        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        method = _method(request)
        translate, scale = _flag(request, "translate"), _flag(request, "scale")
        return ctx, eid, self._batch(ctx, eid, run, tag, step), method, translate, scale

    @wrappers.Request.application
    def _serve_batches(self, request):
        ctx, eid = self._ctx(request)
        out = []
        for run, tags in sorted(self._probes(ctx, eid).items()):
            prefixes = collections.Counter(m.group(1) for t in tags if (m := re.match(r"(.+)/\d+$", t)))
            batches = [{"tag": p, "probes": n} for p, n in sorted(prefixes.items()) if n >= 2]
            batches += [{"tag": t, "probes": 1} for t in sorted(tags)]
            out.append({"run": run, "batches": batches})
        return _respond(request, {"runs": out, "methods": {m: available(m) for m in embedding.METHODS}}, "application/json")

    @wrappers.Request.application
    def _serve_info(self, request):
        ctx, eid = self._ctx(request)
        run, tag = param(request, "run"), param(request, "tag")
        members = self._members(ctx, eid, run, tag)
        per_member = self._datums(ctx, eid, run, members)
        steps = sorted(set.intersection(*(set(d) for d in per_member)))
        if not steps:
            raise errors.NotFoundError(f"the probes of {tag!r} share no step")
        manifests = [self._manifest(ctx, d[steps[-1]]) for d in per_member]
        m0 = manifests[0]
        body = {
            "tag": tag, "probes": members, "steps": steps,
            "num_layers": m0["num_layers"], "num_heads": m0["num_heads"], "num_kv_heads": m0.get("num_kv_heads"),
            "d_head": m0.get("d_head"), "has_qk": all(m["has_qk"] for m in manifests),
            "tokens": [m["tokens"] for m in manifests],
            "key_tokens": [m.get("key_tokens") for m in manifests],
            "methods": {m: available(m) for m in embedding.METHODS},
        }
        return _respond(request, body, "application/json")

    def _check_layer_head(self, request, batch, need_head=True):
        layer = int_param(request, "layer")
        if layer >= batch.num_layers:
            raise errors.NotFoundError(f"layer {layer} out of range: this probe has {batch.num_layers} layers")
        if not need_head:
            return layer, None
        head = int_param(request, "head")
        if head >= batch.num_heads:
            raise errors.NotFoundError(f"head {head} out of range: this probe has {batch.num_heads} heads")
        return layer, head

    @wrappers.Request.application
    def _serve_embedding(self, request):
        with embedding.one_blas_thread():
            return self._embedding_response(request)

    def _embedding_response(self, request):
        ctx, eid, batch, method, translate, scale = self._common(request)
        layer, head = self._check_layer_head(request, batch)
        if method == "pca":
            xy, info = self._pca(ctx, batch, layer, head, translate, scale)
        else:
            hit = self._cached(self._cache_key(batch, layer, head, method, translate, scale))
            if hit is None:
                def fn(job):
                    self._nonlinear(ctx, batch, layer, head, method, translate, scale,
                                    progress=lambda p: setattr(job, "progress", p))

                job = self._submit(("head", *self._cache_key(batch, layer, head, method, translate, scale)), fn)
                return self._pending(request, job)
            xy, info = hit
        h = self._head(ctx, batch, layer, head)
        norms = np.concatenate([np.linalg.norm(h.q, axis=1), np.linalg.norm(h.k, axis=1)])
        quantised, bbox = _unit(xy)  # float16 in [0, 1] over the bounding box: < 1/2000 of the plot
        meta = dict(_clean(info), num_queries=len(h.q), num_keys=len(h.k), bbox=bbox, step=batch.datums[0].step,
                    layer=layer, head=head, kv_head=head // (batch.num_heads // (batch.num_kv_heads or batch.num_heads)))
        body = codec.pack({"xy": quantised, "norm": norms.astype(np.float16)}, meta)
        return _respond(request, body, "application/octet-stream")

    @wrappers.Request.application
    def _serve_matrix(self, request):
        with embedding.one_blas_thread():
            return self._matrix_response(request)

    def _matrix_response(self, request):
        ctx, eid, batch, method, translate, scale = self._common(request)
        heads = [(l, h) for l in range(batch.num_layers) for h in range(batch.num_heads)]
        if method == "pca":
            layouts = [self._pca(ctx, batch, l, h, translate, scale, full=False) for l, h in heads]
        else:
            layouts = [self._cached(self._cache_key(batch, l, h, method, translate, scale)) for l, h in heads]
            missing = [lh for lh, hit in zip(heads, layouts) if hit is None]
            if missing:
                def fn(job):
                    for i, (l, h) in enumerate(missing):
                        self._nonlinear(ctx, batch, l, h, method, translate, scale)
                        job.progress = (i + 1) / len(missing)

                return self._pending(request, self._submit(("matrix", batch.fingerprint, method, int(translate), int(scale)), fn))
        n = len(layouts[0][0])
        xy = np.empty((len(heads), n, 2), np.uint8)
        bboxes = np.empty((len(heads), 4), np.float32)
        for i, (pts, _) in enumerate(layouts):
            xy[i], bboxes[i] = _quantise(pts, 255, np.uint8)
        shape = (batch.num_layers, batch.num_heads)
        arrays = {
            "xy": xy.reshape(shape + (n, 2)),
            "bbox": bboxes.reshape(shape + (4,)),
            "faithfulness": np.array([i["faithfulness"] for _, i in layouts], np.float32).reshape(shape),
            # NaN where not computed yet (PCA thumbnails: scored fully when the head is opened).
            "original": np.array([i.get("original", np.nan) for _, i in layouts], np.float32).reshape(shape),
            "mixing": np.array([i.get("mixing", np.nan) for _, i in layouts], np.float32).reshape(shape),
        }
        nq = sum(len(m["tokens"]) for m in batch.manifests)
        meta = {"method": method, "num_queries": nq, "num_keys": n - nq, "step": batch.datums[0].step}
        return _respond(request, codec.pack(arrays, meta), "application/octet-stream")


def _watch_parent(pid):
    """In the worker process: exit when TensorBoard is gone (even if it was killed and could not say so)."""
    import time

    def watch():
        while os.getppid() == pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _clean(info):
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in info.items()}


def _unit(xy):
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((xy - lo) / span).astype(np.float16), [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]


def _quantise(xy, top, dtype):
    """Coordinates -> integers in [0, top] over the layout's bounding box [x0, y0, x1, y1]."""
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((xy - lo) / span * top).astype(dtype)
    return q, [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]


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
