"""Probes -> the bytes a notebook output embeds: the plugin's route responses (runs, steps, tokens, attention, qk,
image, head_stats, and for long probes lod, topk and tile: lod_parts.py) in one zlib stream, under a byte cap
(docs/notebook.md, "Size").

Layout (read by frontend/src/notebook/payload.ts): zlib("TBN1" + u32 header length + JSON header + bodies), the
header listing each response's route, parameters, content type and place in the bodies, plus the call's options.

The cap is met by giving up detail in this order, and the output says what was given up: queries/keys (except for
the neuron view, which needs them), then each query's keys beyond its top 256, 128, …, 8 (the head view draws only
the top 8 beyond 192 tokens anyway), then steps (a logdir: evenly thinned, the last kept), then fewer top keys, then
layers (the one shown is kept). The Q/K tab's layouts (qk_layouts.py) take at most a quarter of the budget: those of
every step, else of the last step only, else none, and a coarser level when the attention does not fit beside them.
Past 512 tokens the thumbnails, top-k and coarsest tiles are always embedded, finer tiles within a quarter of the
budget and with what is left, and a layer's attention at top 8 keys or fewer is its `topk` answer (no bytes of its
own).
"""

import dataclasses
import json
import struct
import zlib
from typing import Optional

from tb_attention.notebook import lod_parts, qk_layouts

MAGIC = b"TBN1"
DEFAULT_MAX_BYTES = 8 << 20  # of the whole fragment; a 2,048-token, 72-head probe fits at top 8 keys per query
_LEVEL = 3  # zlib: within 1-2 % of level 6 on attention codes, and 5x faster on a multi-MB payload
BASE64 = 4 / 3


@dataclasses.dataclass(frozen=True)
class Plan:
    qk: bool
    topk: Optional[int]  # None: every key
    steps: Optional[int]  # None: every step the caller chose; else at most this many per probe
    one_layer: bool  # only the shown layer


def _thin(steps, n):
    if n is None or len(steps) <= n:
        return list(steps)
    if n == 1:
        return [steps[-1]]
    idx = sorted({round(i * (len(steps) - 1) / (n - 1)) for i in range(n)})
    return [steps[i] for i in idx]


def plans(probes, keep_qk):
    """Candidate plans, most detailed first."""
    has_qk = any(s.qk for p in probes for s in p.steps.values())
    most_steps = max(len(p.steps) for p in probes)
    qk_options = [True] if keep_qk and has_qk else ([True, False] if has_qk else [False])
    out = [Plan(q, None, None, False) for q in qk_options]
    qk = qk_options[-1]
    # Top k only where it is smaller than every key: an index (4 bytes) and a code per kept key, against 1 byte a key.
    shortest = min(layer.key_len for p in probes for s in p.steps.values() for layer in s.layers)
    out += [Plan(qk, k, None, False) for k in (256, 128, 64, 32, 16, 8) if k == 8 or 5 * k < shortest]
    n = most_steps
    while n > 1:
        n = max(1, n // 2)
        out.append(Plan(qk, 8, n, False))
    last_steps = 1 if most_steps > 1 else None
    out += [Plan(qk, k, last_steps, False) for k in (4, 2, 1)]
    out += [Plan(qk, k, last_steps, True) for k in (8, 1)]
    return out


def _layer_bytes(layer, plan, sample, topk=None):
    if topk is not None and lod_parts.from_topk(layer, plan.topk):
        return 0  # the layer's `topk` answer, already counted with the level of detail
    if plan.topk is None or plan.topk >= layer.key_len:
        return layer.dense_bytes * sample["dense"]
    ratio = sample.get(plan.topk, 1.0)
    return layer.heads * layer.query_len * (plan.topk * 5 + 1) * ratio


def estimate(probes, plan, layer_index, sample, lod=None):
    total = 0.0
    topks = {} if lod is None else lod.topk
    for p in probes:
        for step in _thin(sorted(p.steps), plan.steps):
            s = p.steps[step]
            for i, layer in enumerate(s.layers):
                if plan.one_layer and i != min(layer_index, len(s.layers) - 1):
                    continue
                total += _layer_bytes(layer, plan, sample, topks.get((p.run, p.tag, step, i)))
                if plan.qk and s.qk:
                    total += len(s.qk[i]) * sample["qk"]
    return total * BASE64


def _sample(probes, layer_index):
    """Compression ratios measured on one layer of the last step (attention codes of real models compress well, q/k
    in float16 hardly): the estimates that choose a plan before the final payload is built and measured."""
    s = probes[0].last
    layer = s.layers[min(layer_index, len(s.layers) - 1)]
    out: dict = {"qk": 1.0, "dense": 1.0}
    if s.qk:
        q = s.qk[min(layer_index, len(s.qk) - 1)]
        out["qk"] = len(zlib.compress(q, 1)) / max(1, len(q))
    if layer.dense_bytes <= 64 << 20:
        dense = layer.dense()
        out["dense"] = len(zlib.compress(dense, 1)) / max(1, len(dense))
    for k in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        if 5 * k < layer.key_len or k <= 8:
            container, _ = layer.topk(k)
            raw = layer.heads * layer.query_len * (k * 5 + 1)
            out[k] = len(zlib.compress(container, 1)) / max(1, raw)
    return out


def _json(v):
    return json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def responses(probes, plan, layer_index, extra=(), lod=None):
    """-> ([(route, params, type, body, lod)], notes) for `plan`; `extra`: (item, needs) pairs (the Q/K layouts,
    qk_layouts.py, and the level of detail, lod_parts.py), each kept when the probe steps it `needs`,
    [(run, tag, step)], are embedded; `lod`: the lod_parts.Parts whose `topk` answers serve long layers."""
    out: list = []
    notes: list = []
    masses: list = []
    derived = False
    by_run: dict = {}
    for p in probes:
        by_run.setdefault(p.run, []).append(p.tag)
    runs = [{"run": r, "probes": sorted(t), "problems": []} for r, t in sorted(by_run.items())]
    out.append(("runs", {}, "application/json", _json({"runs": runs}), None))
    embedded: set = set()  # (run, tag, step) embedded
    for p in probes:
        base = {"run": p.run, "tag": p.tag}
        chosen = _thin(sorted(p.steps), plan.steps)
        embedded.update((p.run, p.tag, s) for s in chosen)
        if plan.steps is not None and len(chosen) < len(p.steps):
            notes.append(
                f"{p.run} / {p.tag}: {len(chosen)} of the {len(p.steps)} chosen steps kept to stay under the size cap"
            )
        walls = [float(p.wall_times.get(s, 0.0)) for s in chosen]
        out.append(("steps", base, "application/json", _json({"steps": chosen, "wall_times": walls}), None))
        if p.head_stats is not None:
            out.append(("head_stats", base, "application/octet-stream", p.head_stats, None))
        for step in chosen:
            s = p.steps[step]
            at = dict(base, step=str(step))
            out.append(("tokens", at, "application/json", s.tokens_json(), None))
            if s.image is not None:
                out.append(("image", at, "image/png", s.image, None))
            for i, layer in enumerate(s.layers):
                if plan.one_layer and i != min(layer_index, len(s.layers) - 1):
                    continue
                here = dict(at, layer=str(i))
                topk = None if lod is None else lod.topk.get((p.run, p.tag, step, i))
                if topk is not None and lod_parts.from_topk(layer, plan.topk):
                    derived = True  # expanded in the browser (notebook/lod.ts): each query's top 8, the rest 0
                    kind = {"lod": "from-topk", "key_len": layer.key_len}
                    out.append(("attention", here, "application/octet-stream", topk, kind))
                elif plan.topk is None or plan.topk >= layer.key_len:
                    out.append(("attention", here, "application/octet-stream", layer.dense(), None))
                else:
                    container, mass = layer.topk(plan.topk)
                    masses.append(mass)
                    out.append(("attention", here, "application/octet-stream", container, "topk"))
                if plan.qk and s.qk:
                    out.append(("qk", here, "application/octet-stream", s.qk[i], None))
    out += [item for item, needs in extra if all(n in embedded for n in needs)]
    if any(s.qk for p in probes for s in p.steps.values()) and not plan.qk:
        notes.append("queries/keys left out to stay under the size cap: the neuron view is off (pass max_bytes=)")
    if masses:
        notes.append(
            f"each query's top {plan.topk} keys kept ({100 * sum(masses) / len(masses):.1f} % of the attention on "
            "average), the others drawn as 0, to stay under the size cap (pass max_bytes= for more)"
        )
    if derived:
        notes.append(
            "past 512 tokens each query's top 8 keys kept for the views that read whole layers (the head view's "
            "lines), the others drawn as 0, to stay under the size cap (pass max_bytes= for more)"
        )
    if plan.one_layer:
        notes.append(
            f"only layer {layer_index} embedded, to stay under the size cap (pass max_bytes= or include_layers=)"
        )
    return out, notes


def encode(items, options):
    """The TBN1 payload (zlib-compressed) for response items and the call's options."""
    entries, bodies, offset = [], [], 0
    placed: dict = {}  # id(body) -> offset: a body two entries share (a long layer's attention and topk) once
    for route, params, ctype, body, lod in items:
        entry = {"route": route, "params": {k: str(v) for k, v in params.items()}, "type": ctype}
        if id(body) not in placed:
            placed[id(body)] = offset
            bodies.append(body)
            offset += len(body)
        entry.update(offset=placed[id(body)], length=len(body))
        if isinstance(lod, dict):
            entry.update(lod)
        elif lod:
            entry["lod"] = lod
        entries.append(entry)
    header = _json({"entries": entries, "options": options})
    raw = b"".join([MAGIC, struct.pack("<I", len(header)), header, *bodies])
    return zlib.compress(raw, _LEVEL)


def build(probes, options, *, max_bytes, overhead, keep_qk=False, layouts=(), lod=None):
    """-> (compressed payload, notes): the most detailed plan whose fragment (payload as base64 + `overhead`
    bytes) stays under `max_bytes`; ValueError when not even one layer at one key per query fits. `layouts`: the
    Q/K tab's levels (qk_layouts.levels), the most detailed one within its share of the budget first, a coarser one
    when the attention does not fit beside it. `lod`: the level-of-detail answers of long probes (lod_parts.parts):
    its thumbnails, top-k and coarsest tiles always, finer tiles within lod_parts.SHARE of the budget before the
    attention gives up detail, then as many more as the bytes left allow."""
    layer_index = int(options.get("layer") or 0)
    budget = max_bytes - overhead
    if lod is not None and lod.nbytes > budget / 2:
        lod = lod.one_layer(layer_index)  # the top-k and coarsest tiles of every layer take most of the cap
    fixed, fixed_bytes = ([], 0.0) if lod is None else lod.fixed(budget)
    base = [] if lod is None else lod.base + [x for g in fixed for x in g.items]
    base_bytes = 0.0 if lod is None else lod.nbytes + fixed_bytes + _MARGIN
    choices = list(layouts) or [None]
    for n, level in enumerate(choices):
        size = 0 if level is None else level.nbytes * BASE64
        if n < len(choices) - 1 and size > budget * qk_layouts.SHARE:
            continue
        opts = options if level is None else level.apply(options)
        found = _fit(probes, opts, budget, size + base_bytes, layer_index, keep_qk, level, base, lod)
        if found is not None:
            return found[:2] if lod is None else _more_tiles(found, budget, lod, fixed)
    raise ValueError(
        f"this view does not fit in max_bytes={max_bytes:,} even at one layer and one key per query; raise max_bytes"
    )


_MARGIN = 8192  # bytes kept free for the level of detail's notes and 404 messages, added after the fit


def _fit(probes, options, budget, reserved, layer_index, keep_qk, level, base=(), lod=None):
    """The most detailed attention plan that fits in `budget` beside `reserved` bytes of the level's layouts and
    the level of detail's `base` items: (payload, notes, items, options) or None."""
    candidates = plans(probes, keep_qk)
    extra, extra_notes = ([], []) if level is None else (list(level.items), level.notes)
    extra += base
    sample = None
    for i, plan in enumerate(candidates):
        dense = sum(x.dense_bytes for p in probes for s in p.steps.values() for x in s.layers) * BASE64
        if i > 0 or dense > budget - reserved:
            sample = sample or _sample(probes, layer_index)
            if estimate(probes, plan, layer_index, sample, lod) > budget - reserved and i < len(candidates) - 1:
                continue
        items, notes = responses(probes, plan, layer_index, extra, lod)
        notes += extra_notes
        payload = encode(items, dict(options, notes=list(options.get("notes", [])) + notes))
        if len(payload) * BASE64 <= budget - (_MARGIN if lod is not None else 0):
            return payload, notes, items, options
    return None


def _more_tiles(found, budget, lod, fixed):
    """Adds the finer tiles the bytes left allow to a fitted payload, with the level of detail's notes and 404
    messages; drops the last added zoom levels again if the built payload is over `budget`."""
    _, notes, items, options = found
    embedded = {(x[1]["run"], x[1]["tag"], int(x[1]["step"])) for x in items if x[0] == "tokens"}
    kept = [g for g in fixed if set(g.needs) <= embedded]
    room = budget - len(found[0]) * BASE64 - _MARGIN
    added: list = []
    for g in lod.groups[len(fixed) :]:
        if not set(g.needs) <= embedded:
            continue
        if g.nbytes > room:
            break  # in order: a zoom level is embedded for the shown layer and newest steps before the others
        added.append(g)
        room -= g.nbytes
    options = dict(options, missing=dict(options.get("missing") or {}, **lod.missing()))
    while True:
        all_notes = notes + lod.notes(kept + added, embedded)
        more = [item for g in added for item, _ in g.items]
        payload = encode(items + more, dict(options, notes=list(options.get("notes", [])) + all_notes))
        if len(payload) * BASE64 <= budget or not added:
            return payload, all_notes
        added.pop()
