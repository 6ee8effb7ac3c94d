"""HTTP routes of the joint query-key embedding (docs/http_api.md, docs/embedding.md).

Reading a probe batch is `embedding_batch`, computing and caching layouts is `embedding_layouts`, the background
jobs for nonlinear layouts are `jobs`; this module parses parameters and shapes responses.
"""

import collections
import importlib.util
import re

import numpy as np
from tensorboard import errors, plugin_util

from tb_attention.analysis import embedding, embedding_scores
from tb_attention.format import codec
from tb_attention.serve import embedding_batch, embedding_layouts, http, jobs
from tb_attention.serve.params import int_param, param


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
    "tsne": "t-SNE needs scikit-learn on the TensorBoard server: pip install -e '.[embedding]' (or scikit-learn)",
    "umap": "UMAP needs umap-learn on the TensorBoard server: pip install -e '.[umap]' (or umap-learn)",
}


def available(method):
    if method == "tsne":
        return importlib.util.find_spec("sklearn") is not None
    if method == "umap":
        return importlib.util.find_spec("umap") is not None
    return True


class EmbeddingRoutes:
    """Route handlers; `reader` is the plugin's ProbeReader (data provider, sampling hint, manifest cache)."""

    def __init__(self, reader, context):
        self._batches = embedding_batch.BatchReader(reader)
        self._layouts = embedding_layouts.Layouts(
            self._batches, getattr(context, "logdir", None), getattr(context, "flags", None)
        )
        self._jobs = jobs.JobRunner()

    def apps(self):
        return {
            "/embedding_batches": self._serve_batches,
            "/embedding_info": self._serve_info,
            "/embedding": self._serve_embedding,
            "/embedding_matrix": self._serve_matrix,
        }

    def close(self):
        """Stops the worker process (tests; TensorBoard exits without calling this)."""
        self._layouts.close()

    def wait(self, timeout=60):
        """Waits for every queued layout job (tests and benchmarks)."""
        self._jobs.wait(timeout)

    def _pending(self, request, job):
        if job.state == "error":
            self._jobs.forget(job)  # a retry starts afresh
            return http.text(request, job.message, job.code)
        body = {"state": job.state, "progress": round(job.progress, 3)}
        return http.json(request, body, 202)

    def _ctx(self, request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _common(self, request):
        ctx, eid = self._ctx(request)
        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        method = _method(request)
        translate, scale = _flag(request, "translate"), _flag(request, "scale")
        return ctx, eid, self._batches.batch(ctx, eid, run, tag, step), method, translate, scale

    @http.route
    def _serve_batches(self, request):
        ctx, eid = self._ctx(request)
        out = []
        for run, tags in sorted(self._batches.probe_tags(ctx, eid).items()):
            prefixes = collections.Counter(m.group(1) for t in tags if (m := re.match(r"(.+)/\d+$", t)))
            batches = [{"tag": p, "probes": n} for p, n in sorted(prefixes.items()) if n >= 2]
            batches += [{"tag": t, "probes": 1} for t in sorted(tags)]
            out.append({"run": run, "batches": batches})
        return http.json(request, {"runs": out, "methods": {m: available(m) for m in embedding.METHODS}})

    @http.route
    def _serve_info(self, request):
        ctx, eid = self._ctx(request)
        run, tag = param(request, "run"), param(request, "tag")
        members = self._batches.members(ctx, eid, run, tag)
        per_member = self._batches.datums(ctx, eid, run, members)
        steps = sorted(set.intersection(*(set(d) for d in per_member)))
        if not steps:
            raise errors.NotFoundError(f"the probes of {tag!r} share no step")
        manifests = [self._batches.manifest(ctx, d[steps[-1]]) for d in per_member]
        m0 = manifests[0]
        body = {
            "tag": tag,
            "probes": members,
            "steps": steps,
            "num_layers": m0.num_layers,
            "num_heads": m0.num_heads,
            "num_kv_heads": m0.num_kv_heads,
            "d_head": m0.d_head,
            "has_qk": all(m.has_qk for m in manifests),
            "tokens": [m.tokens for m in manifests],
            "key_tokens": [m.key_tokens for m in manifests],
            "methods": {m: available(m) for m in embedding.METHODS},
        }
        return http.json(request, body)

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

    @http.route
    def _serve_embedding(self, request):
        with embedding.one_blas_thread():
            return self._embedding_response(request)

    def _embedding_response(self, request):
        ctx, eid, batch, method, translate, scale = self._common(request)
        layer, head = self._check_layer_head(request, batch)
        if method == "pca":
            xy, info = self._layouts.pca(ctx, batch, layer, head, translate, scale)
        else:
            hit = self._layouts.cached(self._layouts.key(ctx, batch, layer, head, method, translate, scale))
            if hit is None:

                def fn(job):
                    self._layouts.nonlinear(ctx, batch, layer, head, method, translate, scale)

                key = self._layouts.key(ctx, batch, layer, head, method, translate, scale)
                job = self._jobs.submit(("head", *key), fn)
                return self._pending(request, job)
            xy, info = hit
        h = self._batches.head(ctx, batch, layer, head)
        norms = np.concatenate([np.linalg.norm(h.q, axis=1), np.linalg.norm(h.k, axis=1)])
        quantised, bbox = _unit(xy)  # float16 in [0, 1] over the bounding box: < 1/2000 of the plot
        meta = dict(
            _clean(info),
            num_queries=len(h.q),
            num_keys=len(h.k),
            bbox=bbox,
            step=batch.datums[0].step,
            layer=layer,
            head=head,
            kv_head=head // (batch.num_heads // (batch.num_kv_heads or batch.num_heads)),
        )
        arrays = {"xy": quantised, "norm": norms.astype(np.float16)}
        _say_sample(h.index, batch, meta, arrays)
        return http.binary(request, codec.pack(arrays, meta))

    @http.route
    def _serve_matrix(self, request):
        with embedding.one_blas_thread():
            return self._matrix_response(request)

    def _matrix_response(self, request):
        ctx, eid, batch, method, translate, scale = self._common(request)
        first, last = _layers(request, batch.num_layers)
        heads = [(l, h) for l in range(first, last + 1) for h in range(batch.num_heads)]
        if method == "pca":
            layouts = [self._layouts.pca(ctx, batch, l, h, translate, scale, full=False) for l, h in heads]
        else:
            keys = [self._layouts.key(ctx, batch, l, h, method, translate, scale) for l, h in heads]
            layouts = [self._layouts.cached(key) for key in keys]
            missing = [lh for lh, hit in zip(heads, layouts) if hit is None]
            if missing:

                def fn(job):
                    for i, (l, h) in enumerate(missing):
                        self._layouts.nonlinear(ctx, batch, l, h, method, translate, scale)
                        job.progress = (i + 1) / len(missing)

                job_key = ("matrix", batch.fingerprint, method, int(translate), int(scale), first, last)
                return self._pending(request, self._jobs.submit(job_key, fn))
        n = len(layouts[0][0])
        xy = np.empty((len(heads), n, 2), np.uint8)
        bboxes = np.empty((len(heads), 4), np.float32)
        for i, (pts, _) in enumerate(layouts):
            xy[i], bboxes[i] = _quantise(pts, 255, np.uint8)
        shape = (last + 1 - first, batch.num_heads)
        arrays = {
            "xy": xy.reshape(shape + (n, 2)),
            "bbox": bboxes.reshape(shape + (4,)),
            "faithfulness": np.array([i["faithfulness"] for _, i in layouts], np.float32).reshape(shape),
            # NaN where not computed yet (PCA thumbnails: scored fully when the head is opened).
            "original": np.array([i.get("original", np.nan) for _, i in layouts], np.float32).reshape(shape),
            "mixing": np.array([i.get("mixing", np.nan) for _, i in layouts], np.float32).reshape(shape),
        }
        total_q = sum(m.query_len for m in batch.manifests)
        index = self._batches.head(ctx, batch, first, 0, masks=False).index  # the same sample for every head
        nq = total_q if index is None else int(np.count_nonzero(index < total_q))
        meta = {"method": method, "num_queries": nq, "num_keys": n - nq, "step": batch.datums[0].step}
        meta.update(embedding_scores.sample_info(total_q))
        if request.args.get("layers"):
            meta["layers"] = [first, last]
        _say_sample(index, batch, meta, arrays)
        return http.binary(request, codec.pack(arrays, meta))


_LAYERS = re.compile(r"([0-9]{1,9})(?:-([0-9]{1,9}))?")


def _layers(request, num_layers):
    """(first, last) of the `layers` parameter, `a` or `a-b` (inclusive), default every layer: the matrix for many
    heads is asked for a few layers at a time, so it paints as they arrive (a 32 x 32-head matrix in 32 parts)."""
    value = request.args.get("layers")
    if value is None or value == "":
        return 0, num_layers - 1
    m = _LAYERS.fullmatch(value)
    if m is None:
        raise errors.InvalidArgumentError(
            f"parameter 'layers' must be 'a' or 'a-b' (layer indices), got {value[:40]!r}"
        )
    first = int(m.group(1))
    last = first if m.group(2) is None else int(m.group(2))
    if last < first:
        raise errors.InvalidArgumentError(f"parameter 'layers': {first}-{last} is an empty range")
    if last >= num_layers:
        raise errors.NotFoundError(f"layers {first}-{last} out of range: this probe has {num_layers} layers")
    return first, last


def _say_sample(index, batch, meta, arrays):
    """A head beyond embedding.MAX_POINTS is laid out on a sample of its points: which ones (`index`, int32, into
    the queries then the keys of the whole batch) and of how many (`total_queries`, `total_keys`)."""
    if index is None:
        return
    arrays["index"] = index.astype(np.int32)
    meta.update(
        points_sampled=True,
        total_queries=sum(m.query_len for m in batch.manifests),
        total_keys=sum(m.key_len for m in batch.manifests),
    )


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
