"""Reads probes through TensorBoard's data provider, and nothing else: listings, step series, manifests, layers.

Every route of the plugin (and of the embedding routes) reads through one `ProbeReader`, so a stored byte is
decoded and checked in one place. Stored data that cannot be decoded raises `CorruptDataError` (422, with the
step), never a 500: the server keeps running.
"""

import numpy as np
from tensorboard import errors
from tensorboard.data import provider

from tb_attention.format import codec, metadata
from tb_attention.format import manifest as manifest_mod
from tb_attention.serve import lru

_LARGE = 1_000_000_000  # "all samples"; hint 0 means the same and must not reach the provider as 0
_MANIFEST_CACHE = 256
_STEP_INDEX_CACHE = 32  # probes whose step list is kept (a 10,000-step list is a few MB)


class CorruptDataError(errors.PublicError):
    """Stored data that cannot be decoded: the server keeps running and says which step is bad."""

    http_code = 422


class ProbeReader:
    def __init__(self, data_provider, downsample_hint):
        self._provider = data_provider
        self.downsample = downsample_hint or _LARGE
        self.manifests = lru.Lru(_MANIFEST_CACHE)
        self._step_index = lru.Lru(_STEP_INDEX_CACHE)

    # -- listings ------------------------------------------------------------------------------
    def series(self, ctx, eid, kind, lister, problems=None):
        """{run: {tag: content}} of our series of `kind`; series a newer writer made go to `problems`."""
        listing = lister(ctx, experiment_id=eid, plugin_name=metadata.PLUGIN_NAME)
        found: dict = {}
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

    def probes(self, ctx, eid, problems=None):
        return self.series(ctx, eid, metadata.KIND_PROBE, self._provider.list_blob_sequences, problems)

    def head_stat_series(self, ctx, eid, kind=metadata.KIND_HEAD_STATS):
        return self.series(ctx, eid, kind, self._provider.list_tensors)

    # -- steps ---------------------------------------------------------------------------------
    def step_datums(self, ctx, eid, run, tag):
        """The probe's steps, ascending. Re-reading them costs O(steps) per request, so they are cached under the
        series' (max_step, max_wall_time), which changes whenever TensorBoard loads more of the series."""
        listing = self._provider.list_blob_sequences(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.PLUGIN_NAME,
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
        datums: dict = {}
        for datum in self.read_series(ctx, eid, run, [tag]).get(tag, []):
            datums.setdefault(datum.step, datum)  # a repeated step (Python loader) keeps its first write
        return [datums[s] for s in sorted(datums)]

    def read_series(self, ctx, eid, run, tags):
        """{tag: [datum]} of blob sequences of `run` (no caching; the embedding routes read several at once)."""
        series = self._provider.read_blob_sequences(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self.downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=list(tags)),
        )
        return series.get(run, {})

    def read_tensors(self, ctx, eid, run, tags):
        read = self._provider.read_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self.downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=list(tags)),
        )
        return read.get(run, {})

    def blobs(self, ctx, eid, run, tag, step):
        """The blob references of one step."""
        for datum in self.step_datums(ctx, eid, run, tag):
            if datum.step == step:
                return datum.values
        raise errors.NotFoundError(f"step {step} of probe {tag!r} in run {run!r} is not loaded")

    # -- stored bytes --------------------------------------------------------------------------
    def read_blob(self, ctx, ref):
        return self._provider.read_blob(ctx, blob_key=ref.blob_key)

    def manifest(self, ctx, blobs):
        """The step's `format.manifest.Manifest`, validated and checked against the blobs the step holds (cached by
        blob key)."""
        if not blobs:
            raise CorruptDataError("the step holds no blobs (not even a manifest)")
        return self.manifests.get(blobs[metadata.MANIFEST_INDEX].blob_key, lambda: self._read_manifest(ctx, blobs))

    def _read_manifest(self, ctx, blobs):
        if not blobs:
            raise CorruptDataError("the step holds no blobs (not even a manifest)")
        try:
            manifest = manifest_mod.decode(self.read_blob(ctx, blobs[metadata.MANIFEST_INDEX]))
        except manifest_mod.ManifestError as e:
            raise CorruptDataError(f"unreadable step manifest: {e}") from None
        expected = manifest.blob_count()
        if len(blobs) != expected:
            raise CorruptDataError(f"step has {len(blobs)} blobs, its manifest describes {expected}")
        return manifest

    def layer_container(self, ctx, blobs, manifest, layer, index):
        """The decompressed container of blob `index` (a layer's attention or q/k), checked to decode."""
        try:
            container = codec.decompress(self.read_blob(ctx, blobs[index]))
            codec.unpack(container)  # never hand the browser something it cannot decode
        except ValueError as e:
            raise CorruptDataError(f"layer {layer}: stored data cannot be decoded: {e}") from None
        return container

    def step_attention(self, ctx, eid, run, tag, step):
        """All layers of one probe step, decoded: float32 [L, H, Q, K]."""
        blobs = self.blobs(ctx, eid, run, tag, step)
        manifest = self.manifest(ctx, blobs)
        try:
            return np.stack(
                [
                    codec.decode_attention(self.read_blob(ctx, blobs[metadata.attention_index(layer)]))
                    for layer in range(manifest.num_layers)
                ]
            )
        except ValueError as e:
            raise CorruptDataError(f"step {step}: {e}") from None
