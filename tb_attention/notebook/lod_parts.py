"""The level-of-detail answers a notebook output embeds for long probes (docs/notebook.md, "Long probes"): beyond 512
query tokens, or 144 heads, the views stop loading whole layers and ask the `lod`, `topk` and `tile` routes
(frontend/src/data/scale.ts), which a static output has no server for. So they are computed when the fragment is
built, by the functions the server answers with (analysis/lod.py), and packed the same way: the same bytes.

What is embedded for every embedded step: every layer's thumbnails (`lod`, size 64: the model view), every layer's
top-k of all heads (`topk`: the head view's lines) and each head's coarsest tile (`tile`: the matrix view's first
paint), then finer zoom levels (`ZOOM_LEVELS` at most below the coarsest, each four times the bytes of the one above)
as far as the byte cap allows: a quarter of the budget before the attention gives up detail for them, more when
bytes are left over. A tile that is not embedded is a 404 whose message the matrix view shows; the coarser tiles
stay drawn under it.
"""

import dataclasses
import zlib
from typing import Callable, Optional

from tb_attention.analysis import lod, recompute
from tb_attention.format import codec

# frontend/src/data/scale.ts: where the views switch to the level-of-detail routes.
TILE_WEIGHTS = 1024 * 1024  # weights per head above which the matrix view draws tiles
LONG_QUERIES = 512  # query length above which the head view draws the `topk` route
MANY_HEADS = 144  # layers x heads above which the model view draws `lod` thumbnails
SIZE = 64  # the model view's thumbnail size (data/lod.ts fetchLod's default)
ZOOM_LEVELS = 3  # finer tile levels below the coarsest a fragment may hold
SHARE = 0.25  # of the budget, what finer tiles may take before the attention gives up detail for them
OCTET = "application/octet-stream"
BASE64 = 4 / 3
CAP = "pass max_bytes= for more, or open the logdir in TensorBoard"


def uses_thumbnails(m):
    return m["num_layers"] * m["num_heads"] > MANY_HEADS or m["query_len"] > LONG_QUERIES


def uses_topk(m):
    return m["query_len"] > LONG_QUERIES


def uses_tiles(m):
    return m["query_len"] * m["key_len"] > TILE_WEIGHTS


def from_topk(layer, k):
    """Whether a plan keeping each query's top `k` keys (None: all) serves this layer's `attention` from its
    embedded `topk` answer (the top 8, which the head view draws) instead of bytes of its own."""
    return layer.query_len > LONG_QUERIES and k is not None and k <= lod.TOPK < layer.key_len


def _size(items):
    """The base64 bytes these items add to a payload, compressed (attention codes compress, top-k keys well)."""
    return sum(len(zlib.compress(item[3], 1)) for item, _ in items) * BASE64


@dataclasses.dataclass
class Group:
    """The tiles of one zoom level of one layer of one step, every head: computed on first use."""

    level: int
    layer: int
    needs: list  # [(run, tag, step)]
    make: Callable[[], list]
    _items: Optional[list] = None
    _bytes: float = 0.0

    @property
    def items(self):
        if self._items is None:
            self._items = [(item, self.needs) for item in self.make()]
            self._bytes = _size(self._items)
        return self._items

    @property
    def nbytes(self):
        _ = self.items  # computes them (and their size) on first use
        return self._bytes


@dataclasses.dataclass
class Parts:
    base: list  # [(item, needs)]: thumbnails, top-k, each head's coarsest tile
    groups: list  # [Group], coarse to fine (the shown layer and the newest step first within a level)
    topk: dict  # {(run, tag, step, layer): the `topk` body}, for the attention of layers past 512 tokens
    levels: dict  # {(run, tag, step, layer): coarsest level}
    nbytes: float  # base64 bytes of the base, compressed
    reduced: list = dataclasses.field(default_factory=list)  # notes on what one_layer() left out

    def fixed(self, budget):
        """The groups that fit in SHARE of `budget` (in order, stopping at the first that does not)."""
        out, used = [], 0.0
        for g in self.groups:
            if used + g.nbytes > budget * SHARE:
                break
            out.append(g)
            used += g.nbytes
        return out, used

    def notes(self, kept, embedded):
        """The output's note on the zoom levels left out, for the groups `kept` of the `embedded` steps."""
        wanted = [g for g in self.groups if set(g.needs) <= embedded]
        if len(kept) == len(wanted) and all(lv <= ZOOM_LEVELS for lv in self.levels.values()):
            return list(self.reduced)
        finest = min((g.level for g in kept), default=None)
        got = "each head's coarsest tile" + ("" if finest is None else f" and zoom levels down to {finest}")
        return self.reduced + [
            f"matrix view: {got} embedded, to stay under the size cap; finer tiles show a note ({CAP})"
        ]

    def one_layer(self, shown):
        """The same with the top-k and tiles of layer `shown` only (every layer's thumbnails stay): the fallback of
        a probe whose top-k and coarsest tiles of every layer do not fit in the byte cap."""
        keep = [(item, needs) for item, needs in self.base if item[0] == "lod" or item[1]["layer"] == str(shown)]
        groups = [g for g in self.groups if g.layer == shown]
        topk = {k: v for k, v in self.topk.items() if k[3] == shown}
        levels = {k: v for k, v in self.levels.items() if k[3] == shown}
        note = (
            f"past {LONG_QUERIES} tokens only layer {shown}'s top-k lines and tiles are embedded, to stay under the "
            f"size cap; other layers show a note ({CAP})"
        )
        return Parts(keep, groups, topk, levels, _size(keep), [note])

    def missing(self):
        return {
            "tile": "this zoom level is not in this notebook output (it holds each head's coarsest tile and the "
            f"finer levels that fit its size cap; the coarser tiles stay drawn): {CAP}",
            "topk": f"top-k lines not in this notebook output: {CAP}",
            "lod": f"thumbnails not in this notebook output: {CAP}",
        }


def _source(layer):
    codes, row_exp = layer._codes()
    return lod.Weights(codes, row_exp)


def _tiles(layer, at, level):
    """Every tile of every head of a layer at `level`, as the `tile` route answers them."""
    source = _source(layer)
    span = recompute.TILE << level
    out = []
    for head in range(source.num_heads):
        for row in range(-(-source.query_len // span)):
            for col in range(-(-source.key_len // span)):
                body = codec.pack(*lod.tile_answer(source, head, level, row, col))
                params = dict(at, head=str(head), level=str(level), row=str(row), col=str(col))
                out.append(("tile", params, OCTET, body, None))
    return out


def parts(probes, shown_layer=0):
    """The level-of-detail answers of every step of `probes` whose views ask for them, or None when none do."""
    base: list = []
    groups: dict = {}  # {level offset: [Group]}
    topk: dict = {}
    levels: dict = {}
    for p in probes:
        for step in sorted(p.steps, reverse=True):
            s = p.steps[step]
            m, needs = s.manifest, [(p.run, p.tag, step)]
            at = {"run": p.run, "tag": p.tag, "step": str(step)}
            order = sorted(range(len(s.layers)), key=lambda i: (i != shown_layer, i))
            for i in order:
                layer, here = s.layers[i], dict(at, layer=str(i))
                if uses_thumbnails(m):
                    body = codec.pack(*lod.lod_answer(_source(layer), SIZE))
                    base.append((("lod", dict(here, size=str(SIZE)), OCTET, body, None), needs))
                if uses_topk(m):
                    body = codec.pack(*lod.topk_answer(_source(layer), None))
                    topk[(p.run, p.tag, step, i)] = body
                    base.append((("topk", here, OCTET, body, None), needs))
                if uses_tiles(m):
                    top = recompute.levels(layer.query_len, layer.key_len)
                    levels[(p.run, p.tag, step, i)] = top
                    base += [(item, needs) for item in _tiles(layer, here, top)]
                    for n in range(1, min(ZOOM_LEVELS, top) + 1):
                        make = (lambda x, h, lv: lambda: _tiles(x, h, lv))(layer, here, top - n)
                        groups.setdefault(n, []).append(Group(top - n, i, needs, make))
    if not base:
        return None
    ordered = [g for n in sorted(groups) for g in groups[n]]
    return Parts(base, ordered, topk, levels, _size(base))


def answer(layer, route, q):
    """The body of a live view's `lod`, `topk` or `tile` request (widget.py), as the plugin answers it: KeyError
    (404) for a head or tile outside the layer, ValueError for a bad parameter."""
    source = _source(layer)
    if route == "lod":
        size = int(q.get("size", SIZE))
        if not 16 <= size <= 256:
            raise ValueError(f"parameter 'size' must be 16..256, got {size}")
        return codec.pack(*lod.lod_answer(source, size))
    head = None if q.get("head") is None else int(q["head"])
    if head is not None and not 0 <= head < source.num_heads:
        raise KeyError(f"head {head} out of range: this layer has {source.num_heads} heads")
    if route == "topk":
        return codec.pack(*lod.topk_answer(source, head))
    level, row, col = int(q["level"]), int(q["row"]), int(q["col"])
    top, span = recompute.levels(source.query_len, source.key_len), recompute.TILE << level
    if (
        head is None
        or not 0 <= level <= top
        or not (0 <= row * span < source.query_len and 0 <= col * span < source.key_len)
    ):
        raise KeyError(f"no tile {level}/{row}/{col} of head {head} ({source.query_len} x {source.key_len})")
    return codec.pack(*lod.tile_answer(source, head, level, row, col))
