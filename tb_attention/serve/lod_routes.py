"""Routes that draw from a level of detail, whatever a layer stores (docs/http_api.md: `attention`, `qk`, `lod`,
`topk`, `tile`). Reading and checking a layer is `layers`, the arithmetic and the answers analysis/lod.py (which
notebook outputs embed too); this module parses parameters, caches answers by bytes and packs responses. Each
`*_route` only parses; its `*_impl` computes."""

import numpy as np
from tensorboard import errors, plugin_util

from tb_attention.analysis import lod, recompute
from tb_attention.format import codec, metadata
from tb_attention.serve import http, layers, lru, tiles
from tb_attention.serve.layers import TooLargeError
from tb_attention.serve.params import int_param, param

TILE_CACHE_MB = 256  # default of --attention_tile_cache_mb
MAX_REBUILT = 1 << 26  # weights the attention route rebuilds from q/k in one answer (64 MiB of codes)
LOD_SIZES = (16, 256)


def _cache_bytes(flags):
    mb = getattr(flags, "attention_tile_cache_mb", None)
    return int((TILE_CACHE_MB if mb is None else mb) * (1 << 20))


class Layer:
    """One layer a request names: its step's blobs and manifest, the layer index and its decoded source."""

    def __init__(self, routes, request):
        self.ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        run, tag, self.step = param(request, "run"), param(request, "tag"), int_param(request, "step")
        reader = routes.layers.reader
        self.blobs = reader.blobs(self.ctx, eid, run, tag, self.step)
        self.manifest = reader.manifest(self.ctx, self.blobs)
        self.layer = int_param(request, "layer")
        if self.layer >= self.manifest.num_layers:
            raise errors.NotFoundError(
                f"layer {self.layer} out of range: this probe has {self.manifest.num_layers} layers"
            )
        self._layers = routes.layers
        # Names this layer's stored bytes: a rewritten step has other blob keys, so cached answers never go stale.
        self.key = (self.blobs[metadata.attention_index(self.layer)].blob_key, self.layer)

    @property
    def recomputed(self):
        return not self.manifest.weights_stored(self.layer)

    def source(self):
        return self._layers.source(self.ctx, self.blobs, self.manifest, self.layer)

    def head(self, request, name="head"):
        head = int_param(request, name)
        if head >= self.manifest.num_heads:
            raise errors.NotFoundError(
                f"head {head} out of range: layer {self.layer} has {self.manifest.num_heads} heads"
            )
        return head


class LodRoutes:
    def __init__(self, reader, context):
        self.layers = layers.LayerReader(reader)
        # Answers (packed containers) of tiles, thumbnails and top-k, bounded by bytes (--attention_tile_cache_mb).
        self.cache = lru.ByteLru(_cache_bytes(getattr(context, "flags", None)), len)

    def apps(self):
        return {
            "/attention": self._attention_route,
            "/qk": self._qk_route,
            "/lod": self._lod_route,
            "/topk": self._topk_route,
            "/tile": self._tile_route,
        }

    # -- attention: stored weights as they are, a "qk" layer rebuilt ------------------------------------------------
    @http.route
    def _attention_route(self, request):
        layer = Layer(self, request)
        head = None if request.args.get("head") is None else layer.head(request)
        return http.binary(request, self.attention_impl(layer, head))

    def attention_impl(self, layer, head):
        m = layer.manifest
        if not layer.recomputed:
            container = self.layers.reader.layer_container(
                layer.ctx, layer.blobs, m, layer.layer, metadata.attention_index(layer.layer)
            )
            if head is None:
                return container
            # One head only (matrix view of long sequences: a 2,048-token layer of 12 heads is 50 MB of codes).
            meta, arrays = codec.unpack(container)
            if head >= arrays["codes"].shape[0]:
                raise errors.NotFoundError(f"head {head} out of range: this layer has {arrays['codes'].shape[0]} heads")
            sliced = {"codes": arrays["codes"][head : head + 1], "row_exp": arrays["row_exp"][head : head + 1]}
            return codec.pack(sliced, dict(meta, head=head))
        heads = list(range(m.num_heads)) if head is None else [head]
        weights = len(heads) * m.query_len * m.key_len
        if weights > MAX_REBUILT:
            what = f"head {head}" if head is not None else f"all {m.num_heads} heads"
            raise TooLargeError(
                f"layer {layer.layer} stores q/k only: rebuilding {what} of {m.query_len} x {m.key_len} is "
                f"{weights:,} weights, over the bound of {MAX_REBUILT:,}; ask "
                + ("one head (head=) or " if head is None else "")
                + "tiles (tile?level=)"
            )
        source = layer.source()
        parts = [tiles.head_cbrt8(source, h) for h in heads]
        codes = np.stack([c for c, _ in parts])
        row_exp = np.stack([e for _, e in parts])
        meta = {"encoding": "cbrt8", "recomputed": True, **({} if head is None else {"head": head})}
        return codec.pack({"codes": codes, "row_exp": row_exp}, meta)

    # -- qk: one head's queries and its key head ----------------------------------------------------------------------
    @http.route
    def _qk_route(self, request):
        layer = Layer(self, request)
        if not layer.manifest.has_qk:
            raise errors.NotFoundError(f"queries/keys were not logged for step {layer.step}")
        head = None if request.args.get("head") is None else layer.head(request)
        return http.binary(request, self.qk_impl(layer, head))

    def qk_impl(self, layer, head):
        m, index = layer.manifest, metadata.qk_index(layer.layer, layer.manifest.num_layers)
        if head is None:
            return self.layers.reader.layer_container(layer.ctx, layer.blobs, m, layer.layer, index)
        meta, q, k = self.layers.qk(layer.ctx, layer.blobs, m, layer.layer)
        kv = head // (m.num_heads // m.num_kv_heads)
        arrays = {"queries": q[head : head + 1], "keys": k[kv : kv + 1]}
        if layer.recomputed:
            source = layer.source()
            if source.bias is not None:
                arrays["bias"] = source.bias[head : head + 1]
        return codec.pack(arrays, dict(meta, head=head, kv_head=kv))

    # -- lod: every head's thumbnail ----------------------------------------------------------------------------------
    @http.route
    def _lod_route(self, request):
        layer = Layer(self, request)
        size = 64 if request.args.get("size") is None else int_param(request, "size", LOD_SIZES[1])
        if size < LOD_SIZES[0]:
            raise errors.InvalidArgumentError(f"parameter 'size' must be {LOD_SIZES[0]}..{LOD_SIZES[1]}, got {size}")
        return http.binary(request, self.cache.get((*layer.key, "lod", size), lambda: self.lod_impl(layer, size)))

    def lod_impl(self, layer, size):
        return codec.pack(*lod.lod_answer(layer.source(), size))

    # -- topk: each query's largest weights ---------------------------------------------------------------------------
    @http.route
    def _topk_route(self, request):
        layer = Layer(self, request)
        head = None if request.args.get("head") is None else layer.head(request)
        return http.binary(request, self.cache.get((*layer.key, "topk", head), lambda: self.topk_impl(layer, head)))

    def topk_impl(self, layer, head):
        try:
            return codec.pack(*lod.topk_answer(layer.source(), head, layer.layer))
        except lod.NeedsHead as e:
            raise errors.InvalidArgumentError(str(e)) from None

    # -- tile: one tile of the pyramid of one head --------------------------------------------------------------------
    @http.route
    def _tile_route(self, request):
        layer = Layer(self, request)
        head = layer.head(request)
        m = layer.manifest
        coarsest = recompute.levels(m.query_len, m.key_len)
        level = int_param(request, "level")
        if level > coarsest:
            raise errors.NotFoundError(f"level {level} is past the coarsest level {coarsest} of layer {layer.layer}")
        row, col = int_param(request, "row"), int_param(request, "col")
        span = recompute.TILE << level
        if row * span >= m.query_len or col * span >= m.key_len:
            raise errors.NotFoundError(
                f"tile ({row}, {col}) of level {level} is outside head {head} of layer {layer.layer} "
                f"({m.query_len} x {m.key_len}: {-(-m.query_len // span)} x {-(-m.key_len // span)} tiles)"
            )
        key = (*layer.key, "tile", head, level, row, col)
        return http.binary(request, self.cache.get(key, lambda: self.tile_impl(layer, head, level, row, col)))

    def tile_impl(self, layer, head, level, row, col):
        return codec.pack(*lod.tile_answer(layer.source(), head, level, row, col))
