"""The TensorBoard plugin: reads probes through the data provider and serves them (docs/http_api.md)."""

from importlib import resources

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from tb_attention.format import codec, metadata
from tb_attention.format import stats as stats_mod
from tb_attention.serve import http, probe_reader
from tb_attention.serve.params import int_param, param, unit_param
from tb_attention.serve.probe_reader import CorruptDataError


class AttentionPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        hint = (context.sampling_hints or {}).get(self.plugin_name)
        self._reader = probe_reader.ProbeReader(context.data_provider, hint)
        from tb_attention.serve import embedding_routes  # joint q/k embedding routes (docs/embedding.md)

        self._embedding = embedding_routes.EmbeddingRoutes(self._reader, context)
        from tb_attention.serve import lod_routes  # attention, qk, lod, topk, tile (any storage)

        self._lod = lod_routes.LodRoutes(self._reader, context)

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
            "/head_stats": self._serve_head_stats,
            "/metric_runs": self._serve_metric_runs,
            "/head_diff": self._serve_head_diff,
            "/rollout": self._serve_rollout,
            "/image": self._serve_image,
            **self._lod.apps(),
            **self._embedding.apps(),
        }

    def _context(self, request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _step_blobs(self, request):
        """(ctx, blobs, manifest) of the step a request names (run, tag, step)."""
        ctx, eid = self._context(request)
        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        blobs = self._reader.blobs(ctx, eid, run, tag, step)
        return ctx, blobs, self._reader.manifest(ctx, blobs)

    # -- routes --------------------------------------------------------------------------------
    @http.route
    def _serve_index(self, request):
        bundle = resources.files("tb_attention").joinpath("static/index.js").read_bytes()
        return http_util.Respond(request, bundle, "text/javascript")

    @http.route
    def _serve_runs(self, request):
        problems: dict = {}
        ctx, eid = self._context(request)
        probes = self._reader.probes(ctx, eid, problems)
        # Tags with per-head metrics but no attention step (add_metrics only): the Evolution tab draws them.
        metrics_only = {
            run: sorted(
                {c["probe"] for c in series.values() if isinstance(c.get("probe"), str)} - set(probes.get(run, {}))
            )
            for run, series in self._reader.head_stat_series(ctx, eid).items()
        }
        runs = sorted(set(probes) | set(problems) | {r for r, tags in metrics_only.items() if tags})
        return http.json(
            request,
            {
                "runs": [
                    {"run": r, "probes": sorted(probes.get(r, {})), "problems": problems.get(r, [])}
                    | ({"metrics_only": metrics_only[r]} if metrics_only.get(r) else {})  # absent when none
                    for r in runs
                ]
            },
        )

    @http.route
    def _serve_steps(self, request):
        ctx, eid = self._context(request)
        datums = self._reader.step_datums(ctx, eid, param(request, "run"), param(request, "tag"))
        return http.json(request, {"steps": [d.step for d in datums], "wall_times": [d.wall_time for d in datums]})

    @http.route
    def _serve_tokens(self, request):
        return http.json(request, self._step_blobs(request)[2].raw)

    @http.route
    def _serve_image(self, request):
        from tb_attention.format import image

        ctx, blobs, manifest = self._step_blobs(request)
        info = manifest.image
        if not info:
            raise errors.NotFoundError(
                f"step {request.args.get('step')} of probe {request.args.get('tag')!r} has no image "
                "(log one with add_attention(..., image=, patch_grid=))"
            )
        try:
            index, width, height = int(info["index"]), int(info["width"]), int(info["height"])
            if not 0 < index < len(blobs):
                raise ValueError(f"image blob {index} out of range")
            png = self._reader.read_blob(ctx, blobs[index])
            image.check_png(png, width, height)  # never hand the browser a picture it cannot draw
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptDataError(f"step {request.args.get('step')}: {e}") from None
        return http_util.Respond(request, png, "image/png")

    @http.route
    def _serve_head_stats(self, request):
        run, tag = param(request, "run"), param(request, "tag")
        ctx, eid = self._context(request)
        stats = self._reader.head_stat_series(ctx, eid)
        tags = {t: c for t, c in stats.get(run, {}).items() if c.get("probe") == tag}
        if not tags:
            raise errors.NotFoundError(f"no head statistics for probe {tag!r} in run {run!r}")
        crcs = self._reader.head_stat_series(ctx, eid, metadata.KIND_HEAD_STATS_CRC).get(run, {})
        crc_tag = metadata.stats_crc_tag(tag)
        read = self._reader.read_tensors(ctx, eid, run, list(tags) + ([crc_tag] if crc_tag in crcs else []))
        # Series may hold different steps (sampling, a metric added later): format/stats.py aligns them on the union.
        values: dict = {}
        walls: dict = {}
        for stat_tag, content in sorted(tags.items()):
            by_step: dict = {}
            for d in read.get(stat_tag, []):
                if d.step not in by_step:
                    by_step[d.step] = d.numpy
                walls.setdefault(d.step, d.wall_time)
            values[content["stat"]] = by_step
        checksums = {d.step: stats_mod.stored_crc(d.numpy) for d in read.get(crc_tag, [])}
        layers = stats_mod.series_layers(c for _, c in sorted(tags.items()))  # the model's numbering, if logged
        try:
            return http.binary(request, stats_mod.head_stats(values, walls, checksums, layers))
        except ValueError as e:
            raise CorruptDataError(str(e)) from None

    # -- evolution (docs/metrics.md) -------------------------------------------------------------
    @http.route
    def _serve_metric_runs(self, request):
        ctx, eid = self._context(request)
        stats = self._reader.head_stat_series(ctx, eid)
        runs = []
        for run in sorted(stats):
            tags: dict = {}
            for content in stats[run].values():
                if isinstance(content.get("probe"), str) and isinstance(content.get("stat"), str):
                    tags.setdefault(content["probe"], set()).add(content["stat"])
            runs.append({"run": run, "tags": [{"tag": t, "stats": sorted(tags[t])} for t in sorted(tags)]})
        return http.json(request, {"runs": runs})

    @http.route
    def _serve_head_diff(self, request):
        from tb_attention.serve import compare

        run, tag, step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        run_b = request.args.get("run_b") or run
        tag_b = request.args.get("tag_b") or tag
        step_b = int_param(request, "step_b")
        ctx, eid = self._context(request)
        steps = []
        for r, t, s in ((run, tag, step), (run_b, tag_b, step_b)):
            blobs = self._reader.blobs(ctx, eid, r, t, s)
            steps.append((blobs, self._reader.manifest(ctx, blobs)))
        jsd, meta = compare.head_diff_impl(self._lod.layers, ctx, steps[0], steps[1])
        return http.binary(request, codec.pack({"jsd": jsd}, meta))

    @http.route
    def _serve_rollout(self, request):
        from tb_attention.analysis import evolution
        from tb_attention.serve import compare

        fusion = request.args.get("fusion") or "mean"
        if fusion not in evolution.FUSIONS:
            raise errors.InvalidArgumentError(f"parameter 'fusion' must be one of {list(evolution.FUSIONS)}")
        residual = unit_param(request, "residual", 0.5)
        ctx, blobs, manifest = self._step_blobs(request)
        out = compare.rollout_impl(self._lod.layers, ctx, blobs, manifest, fusion, residual)
        meta = {"fusion": fusion, "residual": residual, "approximation": "attention rollout (Abnar & Zuidema 2020)"}
        return http.binary(request, codec.pack({"rollout": out}, meta))
