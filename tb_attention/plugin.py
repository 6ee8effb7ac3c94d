"""The TensorBoard plugin: reads probes through the data provider and serves them (docs/http_api.md)."""

import json
import logging
from importlib import resources

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_attention import codec, lru, metadata
from tb_attention.params import int_param, param

_log = logging.getLogger(__name__)
_LARGE = 1_000_000_000  # "all samples"; hint 0 means the same and must not reach the provider as 0
_MANIFEST_CACHE = 256
_STEP_INDEX_CACHE = 32  # probes whose step list is kept (a 10,000-step list is a few MB)


class CorruptDataError(errors.PublicError):
    """Stored data that cannot be decoded: the server keeps running and says which step is bad."""

    http_code = 422


def _binary(request, container):
    return http_util.Respond(request, container, "application/octet-stream")


def _json(request, value):
    return http_util.Respond(request, value, "application/json")


class AttentionPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._provider = context.data_provider
        self._downsample = (context.sampling_hints or {}).get(self.plugin_name) or _LARGE
        self._manifests = lru.Lru(_MANIFEST_CACHE)
        self._step_index = lru.Lru(_STEP_INDEX_CACHE)
        from tb_attention import embedding_service  # joint q/k embedding routes (docs/embedding.md)

        self._embedding = embedding_service.EmbeddingRoutes(self, context)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Attention")

    def is_active(self):
        return False  # TensorBoard enables the tab when the data provider lists our plugin's data

    def get_plugin_apps(self):
        return {
            "/index.js": self._serve_index,
            "/runs": self._serve_runs,
            "/steps": self._serve_steps,
            "/tokens": self._serve_tokens,
            "/attention": self._serve_attention,
            "/qk": self._serve_qk,
            "/head_stats": self._serve_head_stats,
            "/metric_runs": self._serve_metric_runs,
            "/head_diff": self._serve_head_diff,
            "/rollout": self._serve_rollout,
            "/image": self._serve_image,
            **self._embedding.apps(),
        }

    # -- reading -------------------------------------------------------------------------------
    def _context(self, request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _series(self, request, kind, lister, problems=None):
        """{run: {tag: content}} of our series of `kind`; series a newer writer made go to `problems`."""
        ctx, eid = self._context(request)
        listing = lister(ctx, experiment_id=eid, plugin_name=self.plugin_name)
        found = {}
        for run, tags in listing.items():
            for tag, series in tags.items():
                try:
                    content = metadata.parse_plugin_content(series.plugin_content)
                except metadata.UnsupportedVersionError as e:
                    if problems is not None:
                        problems.setdefault(run, []).append({"tag": tag, "message": str(e)})
                    continue
                if content is not None and content.get("kind") == kind:
                    found.setdefault(run, {})[tag] = content
        return found

    def _probes(self, request, problems=None):
        return self._series(request, metadata.KIND_PROBE, self._provider.list_blob_sequences, problems)

    def _step_datums(self, request, run, tag):
        """The probe's steps, ascending. Re-reading them costs O(steps) per request, so they are cached under the
        series' (max_step, max_wall_time), which changes whenever TensorBoard loads more of the series."""
        ctx, eid = self._context(request)
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=eid, plugin_name=self.plugin_name,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        )
        series = listing.get(run, {}).get(tag)
        try:
            content = series and metadata.parse_plugin_content(series.plugin_content)
        except metadata.UnsupportedVersionError as e:
            raise errors.NotFoundError(f"probe {tag!r} in run {run!r}: {e}") from None
        if not content or content.get("kind") != metadata.KIND_PROBE:
            raise errors.NotFoundError(f"no attention probe {tag!r} in run {run!r}")
        key = (eid, run, tag, series.max_step, series.max_wall_time)
        return self._step_index.get(key, lambda: self._read_step_datums(ctx, eid, run, tag))

    def _read_step_datums(self, ctx, eid, run, tag):
        series = self._provider.read_blob_sequences(
            ctx,
            experiment_id=eid,
            plugin_name=self.plugin_name,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        )
        datums = {}
        for datum in series.get(run, {}).get(tag, []):
            datums.setdefault(datum.step, datum)  # a repeated step (Python loader) keeps its first write
        return [datums[s] for s in sorted(datums)]

    def _blobs(self, request):
        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        for datum in self._step_datums(request, run, tag):
            if datum.step == step:
                return datum.values
        raise errors.NotFoundError(f"step {step} of probe {tag!r} in run {run!r} is not loaded")

    def _read_blob(self, request, ref):
        ctx, _ = self._context(request)
        return self._provider.read_blob(ctx, blob_key=ref.blob_key)

    def _manifest(self, request, blobs):
        return self._manifests.get(blobs[metadata.MANIFEST_INDEX].blob_key, lambda: self._read_manifest(request, blobs))

    def _read_manifest(self, request, blobs):
        try:
            manifest = json.loads(self._read_blob(request, blobs[metadata.MANIFEST_INDEX]))
            expected = metadata.blob_count(manifest)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptDataError(f"unreadable step manifest: {e!r}") from None
        if len(blobs) != expected:
            raise CorruptDataError(f"step has {len(blobs)} blobs, its manifest describes {expected}")
        return manifest

    def _layer_blob(self, request, index_of):
        blobs = self._blobs(request)
        manifest = self._manifest(request, blobs)
        layer = int_param(request, "layer")
        if layer >= manifest["num_layers"]:
            raise errors.NotFoundError(f"layer {layer} out of range: this probe has {manifest['num_layers']} layers")
        index = index_of(layer, manifest)
        if index is None:
            raise errors.NotFoundError("queries/keys were not logged for this step")
        try:
            container = codec.decompress(self._read_blob(request, blobs[index]))
            codec.unpack(container)  # never hand the browser something it cannot decode
        except ValueError as e:
            raise CorruptDataError(f"layer {layer}: stored data cannot be decoded: {e}") from None
        return container

    # -- routes --------------------------------------------------------------------------------
    @wrappers.Request.application
    def _serve_index(self, request):
        bundle = resources.files("tb_attention").joinpath("static/index.js").read_bytes()
        return http_util.Respond(request, bundle, "text/javascript")

    @wrappers.Request.application
    def _serve_runs(self, request):
        problems = {}
        probes = self._probes(request, problems)
        runs = sorted(set(probes) | set(problems))
        return _json(
            request,
            {
                "runs": [
                    {"run": r, "probes": sorted(probes.get(r, {})), "problems": problems.get(r, [])} for r in runs
                ]
            },
        )

    @wrappers.Request.application
    def _serve_steps(self, request):
        datums = self._step_datums(request, param(request, "run"), param(request, "tag"))
        return _json(request, {"steps": [d.step for d in datums], "wall_times": [d.wall_time for d in datums]})

    @wrappers.Request.application
    def _serve_tokens(self, request):
        return _json(request, self._manifest(request, self._blobs(request)))

    @wrappers.Request.application
    def _serve_attention(self, request):
        container = self._layer_blob(request, lambda layer, m: metadata.attention_index(layer))
        if request.args.get("head") is None:
            return _binary(request, container)
        # One head only (matrix view of long sequences: a 2,048-token layer of 12 heads is 50 MB of codes).
        head = int_param(request, "head")
        meta, arrays = codec.unpack(container)
        if head >= arrays["codes"].shape[0]:
            raise errors.NotFoundError(f"head {head} out of range: this layer has {arrays['codes'].shape[0]} heads")
        sliced = {"codes": arrays["codes"][head : head + 1], "row_exp": arrays["row_exp"][head : head + 1]}
        return _binary(request, codec.pack(sliced, dict(meta, head=head)))

    @wrappers.Request.application
    def _serve_qk(self, request):
        def index(layer, m):
            return metadata.qk_index(layer, m["num_layers"]) if m["has_qk"] else None

        return _binary(request, self._layer_blob(request, index))

    @wrappers.Request.application
    def _serve_image(self, request):
        from tb_attention import image

        blobs = self._blobs(request)
        info = self._manifest(request, blobs).get("image")
        if not info:
            raise errors.NotFoundError(
                f"step {request.args.get('step')} of probe {request.args.get('tag')!r} has no image "
                "(log one with add_attention(..., image=, patch_grid=))"
            )
        try:
            index, width, height = int(info["index"]), int(info["width"]), int(info["height"])
            if not 0 < index < len(blobs):
                raise ValueError(f"image blob {index} out of range")
            png = self._read_blob(request, blobs[index])
            image.check_png(png, width, height)  # never hand the browser a picture it cannot draw
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptDataError(f"step {request.args.get('step')}: {e}") from None
        return http_util.Respond(request, png, "image/png")

    @wrappers.Request.application
    def _serve_head_stats(self, request):
        run, tag = param(request, "run"), param(request, "tag")
        ctx, eid = self._context(request)
        stats = self._series(request, metadata.KIND_HEAD_STATS, self._provider.list_tensors)
        tags = {t: c for t, c in stats.get(run, {}).items() if c.get("probe") == tag}
        if not tags:
            raise errors.NotFoundError(f"no head statistics for probe {tag!r} in run {run!r}")
        read = self._provider.read_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=self.plugin_name,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=list(tags)),
        )
        # Series may hold different steps (sampling, a metric added later): align on the union, NaN where missing.
        per_stat, walls = {}, {}
        for stat_tag, content in sorted(tags.items()):
            datums = {}
            for d in read.get(run, {}).get(stat_tag, []):
                datums.setdefault(d.step, d)
                walls.setdefault(d.step, d.wall_time)
            per_stat[content["stat"]] = datums
        steps = sorted(walls)
        index = {s: i for i, s in enumerate(steps)}
        arrays = {
            "steps": np.array(steps, np.float64),
            "wall_times": np.array([walls[s] for s in steps], np.float64),
        }
        for stat, datums in per_stat.items():
            shapes = {np.shape(d.numpy) for d in datums.values()}
            if len(shapes) != 1:
                raise CorruptDataError(f"statistic {stat!r} changes shape between steps: {sorted(shapes)}")
            out = np.full((len(steps),) + shapes.pop(), np.nan, np.float32)
            for s, d in datums.items():
                out[index[s]] = d.numpy
            arrays[stat] = out
        return _binary(request, codec.pack(arrays, {"stats": sorted(per_stat)}))

    # -- evolution (docs/metrics.md) -------------------------------------------------------------
    def _step_attention(self, request, run, tag, step):
        """All layers of one probe step, decoded: float32 [L, H, Q, K]."""
        for datum in self._step_datums(request, run, tag):
            if datum.step == step:
                blobs = datum.values
                break
        else:
            raise errors.NotFoundError(f"step {step} of probe {tag!r} in run {run!r} is not loaded")
        manifest = self._manifest(request, blobs)
        try:
            return np.stack([
                codec.decode_attention(self._read_blob(request, blobs[metadata.attention_index(layer)]))
                for layer in range(manifest["num_layers"])
            ])
        except ValueError as e:
            raise CorruptDataError(f"step {step}: {e}") from None

    @wrappers.Request.application
    def _serve_metric_runs(self, request):
        stats = self._series(request, metadata.KIND_HEAD_STATS, self._provider.list_tensors)
        runs = []
        for run in sorted(stats):
            tags = {}
            for content in stats[run].values():
                if isinstance(content.get("probe"), str) and isinstance(content.get("stat"), str):
                    tags.setdefault(content["probe"], set()).add(content["stat"])
            runs.append({"run": run, "tags": [{"tag": t, "stats": sorted(tags[t])} for t in sorted(tags)]})
        return _json(request, {"runs": runs})

    @wrappers.Request.application
    def _serve_head_diff(self, request):
        from tb_attention import evolution

        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        run_b = request.args.get("run_b") or run
        tag_b = request.args.get("tag_b") or tag
        step_b = int_param(request, "step_b")
        a = self._step_attention(request, run, tag, step)
        b = self._step_attention(request, run_b, tag_b, step_b)
        if a.shape != b.shape:
            raise errors.InvalidArgumentError(
                f"cannot compare: attention shapes differ ({list(a.shape)} vs {list(b.shape)}) [L, H, Q, K]"
            )
        jsd = evolution.js_divergence(a, b).astype(np.float32)
        return _binary(request, codec.pack({"jsd": jsd}, {"measure": "jensen_shannon_bits"}))

    @wrappers.Request.application
    def _serve_rollout(self, request):
        from tb_attention import evolution

        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        fusion = request.args.get("fusion") or "mean"
        if fusion not in evolution.FUSIONS:
            raise errors.InvalidArgumentError(f"parameter 'fusion' must be one of {list(evolution.FUSIONS)}")
        try:
            residual = float(request.args.get("residual") or 0.5)
        except ValueError:
            raise errors.InvalidArgumentError("parameter 'residual' must be a number in [0, 1]") from None
        if not 0.0 <= residual <= 1.0:
            raise errors.InvalidArgumentError("parameter 'residual' must be a number in [0, 1]")
        attn = self._step_attention(request, run, tag, step)
        if attn.shape[-1] != attn.shape[-2]:
            raise errors.InvalidArgumentError("rollout needs self-attention (this probe is cross-attention)")
        out = evolution.rollout(attn, fusion, residual)
        meta = {"fusion": fusion, "residual": residual, "approximation": "attention rollout (Abnar & Zuidema 2020)"}
        return _binary(request, codec.pack({"rollout": out}, meta))
