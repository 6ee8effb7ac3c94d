"""The Q/K embedding tab of a notebook output: its PCA layouts, computed when the fragment is built and embedded as
the plugin's `embedding_info`, `embedding` and `embedding_matrix` routes answer them (docs/http_api.md).

A notebook output has no server to compute layouts on request, so it holds one setting, the tab's fast one: PCA with
keys centred and equal spread (the route parameters method=pca, translate=1, scale=1), for every layer x head of
every embedded step, each step aligned to the previous one as the server aligns them (so the step slider animates).
The layouts come from the same functions of analysis/embedding.py the server uses; the response shaping of
serve/embedding_routes.py is repeated here because notebook/ may not import serve/ (docs/architecture.md).

Scores (the faithfulness ρ, the original-space score, q/k mixing) cost O(queries x keys) per head: they are computed
for the newest steps within `SCORE_PAIRS` query-key pairs and shown as "–" elsewhere; the output says so.
"""

import dataclasses
import json
import re

import numpy as np

from tb_attention.analysis import embedding, embedding_scores
from tb_attention.format import codec

PARAMS = {"method": "pca", "translate": "1", "scale": "1"}
# What the tab may offer (embedding_info's "only": the frontend disables the other settings).
ONLY = {"method": "pca", "translate": True, "scale": True}
# Query-key pairs scored in all (~0.6 µs a pair on one core: about 2 s). MiniLM at 128 tokens: 1.2 M pairs a step.
SCORE_PAIRS = 3_000_000
# Of the fragment's byte budget, what the layouts may take before the attention must give up detail for them.
SHARE = 0.25


@dataclasses.dataclass
class Level:
    """One level of detail of the tab: its response items (payload.responses's tuples, each with the probe steps
    it needs embedded), the notes it adds, the 404 messages of the layouts it leaves out, whether the tab is hidden."""

    items: list
    notes: list
    missing: dict
    hidden: bool = False

    @property
    def nbytes(self):
        return sum(len(item[3]) for item, _ in self.items)

    def apply(self, options):
        """The call's options with this level's hidden tab and 404 messages."""
        out = dict(options)
        if self.hidden and "embedding" not in out.get("hide", []):
            out["hide"] = list(out.get("hide", [])) + ["embedding"]
        if self.missing:
            out["missing"] = dict(out.get("missing") or {}, **self.missing)
        return out


def _json(v):
    return json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def batches(probes):
    """{(run, batch tag): [member Probe]}: probes `tag/0`, `tag/1`, … of a run pooled as the plugin pools them
    (the frontend asks for the batch of `tag/N` as `tag`), any other probe alone; only probes with q/k."""
    out: dict = {}
    for p in probes:
        if not all(s.qk for s in p.steps.values()):
            continue
        m = re.match(r"(.+)/(\d+)$", p.tag)
        key, order = ((p.run, m.group(1)), int(m.group(2))) if m else ((p.run, p.tag), 0)
        out.setdefault(key, []).append((order, p))
    return {k: [p for _, p in sorted(v, key=lambda x: x[0])] for k, v in out.items()}


def _shape(manifest):
    return tuple(manifest.get(k) for k in ("num_layers", "num_heads", "num_kv_heads", "d_head"))


def _layer(members, step, layer):
    """(q [H, Nq, D], k [Hkv, Nk, D], q_probe, k_probe, masks) of one layer over a batch at one step: what the
    server's BatchReader reads, from the same bytes (masks: keys a query may attend to, i.e. nonzero codes)."""
    qs, ks, masks = [], [], []
    for p in members:
        s = p.steps[step]
        _, arrays = codec.unpack(s.qk[layer])
        qs.append(np.asarray(arrays["queries"], np.float32))
        ks.append(np.asarray(arrays["keys"], np.float32))
        codes, _ = s.layers[layer]._codes()
        masks.append((codes > 0).any(0))
    q_probe = np.concatenate([np.full(q.shape[1], i) for i, q in enumerate(qs)])
    k_probe = np.concatenate([np.full(k.shape[1], i) for i, k in enumerate(ks)])
    return np.concatenate(qs, 1), np.concatenate(ks, 1), q_probe, k_probe, masks


def _unit(xy):
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((xy - lo) / span).astype(np.float16), [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]


def _quantise(xy):
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.rint((xy - lo) / span * 255).astype(np.uint8), [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]


def _finite(v):
    return None if isinstance(v, float) and not np.isfinite(v) else v


def _scored_steps(members, steps):
    """The newest steps whose query-key pairs fit in SCORE_PAIRS together."""
    m = members[0].steps[steps[-1]].manifest
    per_head = sum(p.steps[steps[-1]].manifest["query_len"] * p.steps[steps[-1]].manifest["key_len"] for p in members)
    per_step = per_head * m["num_layers"] * m["num_heads"]
    n = min(len(steps), SCORE_PAIRS // max(per_step, 1))
    return set(steps[len(steps) - n :])


def _batch(run, tag, members):
    """-> ({step: [(item, needs)]}, info item, notes) for one batch: every layer x head at every common step."""
    steps = sorted(set.intersection(*(set(p.steps) for p in members)))
    manifests = [p.steps[steps[-1]].manifest for p in members] if steps else []
    if not steps or len({_shape(m) for m in manifests}) != 1:
        return {}, None, [f"{run} / {tag}: no Q/K embedding (its probes share no step, or disagree on shapes)"]
    m0 = manifests[0]
    L, H = m0["num_layers"], m0["num_heads"]
    info = {
        "tag": tag,
        "probes": [p.tag for p in members],
        "steps": steps,
        "num_layers": L,
        "num_heads": H,
        "num_kv_heads": m0.get("num_kv_heads"),
        "d_head": m0.get("d_head"),
        "has_qk": True,
        "tokens": [m["tokens"] for m in manifests],
        "key_tokens": [m.get("key_tokens") for m in manifests],
        "methods": {name: name == "pca" for name in embedding.METHODS},
        "only": ONLY,
    }
    scored = _scored_steps(members, steps)
    notes = []
    if not scored:
        notes.append(f"{run} / {tag}: Q/K layout scores (ρ) not computed for a probe this long (TensorBoard does)")
    elif len(scored) < len(steps):
        notes.append(
            f"{run} / {tag}: Q/K layout scores (ρ) computed for the last {len(scored)} of {len(steps)} steps "
            "(TensorBoard computes the others)"
        )
    xy = np.empty((len(steps), L, H), object)
    scores = np.empty((len(steps), L, H), object)
    norms = np.empty((len(steps), L, H), object)
    counts = {}
    with embedding.one_blas_thread():
        for li in range(L):
            reference = [None] * H
            for si, step in enumerate(steps):
                q, k, q_probe, k_probe, masks = _layer(members, step, li)
                group = q.shape[0] // k.shape[0]
                counts[step] = (q.shape[1], k.shape[1])
                for hi in range(H):
                    head = embedding.Head(q[hi], k[hi // group], q_probe, k_probe, masks)
                    pts, meta = embedding.layout(head, "pca", True, True, reference=reference[hi])
                    meta = dict(meta, method="pca", aligned=reference[hi] is not None, kv_head=hi // group)
                    if step in scored:
                        meta.update(embedding.scores(head, pts, True, True))
                    reference[hi] = pts
                    xy[si, li, hi], scores[si, li, hi] = pts, meta
                    norms[si, li, hi] = np.concatenate([np.linalg.norm(head.q, axis=1), np.linalg.norm(head.k, axis=1)])
    base = {"run": run, "tag": tag, **PARAMS}
    per_step = {}
    for si, step in enumerate(steps):
        needs = [(run, p.tag, step) for p in members]
        nq, nk = counts[step]
        items = [(_matrix(xy[si], scores[si], nq, nk, step, base), needs)]
        for li in range(L):
            for hi in range(H):
                meta = scores[si, li, hi]
                unit, bbox = _unit(xy[si, li, hi])
                meta = {k: _finite(v) for k, v in meta.items()}
                meta.update(num_queries=nq, num_keys=nk, bbox=bbox, step=step, layer=li, head=hi)
                body = codec.pack({"xy": unit, "norm": norms[si, li, hi].astype(np.float16)}, meta)
                params = dict(base, step=str(step), layer=str(li), head=str(hi))
                items.append((("embedding", params, "application/octet-stream", body, None), needs))
        per_step[step] = items
    info_item = ("embedding_info", {"run": run, "tag": tag}, "application/json", _json(info), None)
    return per_step, info_item, notes


def _matrix(xy, scores, nq, nk, step, base):
    """The `embedding_matrix` response of one step: every head's layout as uint8 in its own box, and its scores."""
    L, H = xy.shape
    q = np.empty((L, H, nq + nk, 2), np.uint8)
    bbox = np.empty((L, H, 4), np.float32)
    score = {name: np.full((L, H), np.nan, np.float32) for name in ("faithfulness", "original", "mixing")}
    for li in range(L):
        for hi in range(H):
            q[li, hi], bbox[li, hi] = _quantise(xy[li, hi])
            for name, values in score.items():
                values[li, hi] = scores[li, hi].get(name, np.nan)
    meta = {"method": "pca", "num_queries": nq, "num_keys": nk, "step": step, **embedding_scores.sample_info(nq)}
    body = codec.pack({"xy": q, "bbox": bbox, **score}, meta)
    return "embedding_matrix", dict(base, step=str(step)), "application/octet-stream", body, None


def levels(probes):
    """The tab's levels of detail, most detailed first: layouts of every embedded step, of the last step only, none.
    Empty when no probe has q/k (the tab is hidden by the caller)."""
    found = batches(probes)
    if not found:
        return []
    every: list = []
    last: list = []
    notes: list = []
    for (run, tag), members in sorted(found.items()):
        per_step, info_item, batch_notes = _batch(run, tag, members)
        notes += batch_notes
        if info_item is None:
            continue
        every.append((info_item, []))
        last.append((info_item, []))
        for step in sorted(per_step):
            every += per_step[step]
        last += per_step[max(per_step)]
    cap = "to stay under the size cap (pass max_bytes= for more)"
    out = []
    if every:
        out.append(Level(every, notes, {}))
        if len(last) < len(every):
            note = f"Q/K embedding: the layouts of the last step only, {cap}"
            missing = f"the Q/K layouts of this step are not in this notebook output (only the last step's, {cap})"
            out.append(Level(last, notes + [note], {"embedding_matrix": missing, "embedding": missing}))
    out.append(Level([], notes + [f"Q/K embedding left out {cap}"], {}, hidden=True))
    return out
