"""A probe batch (`tag/0`, `tag/1`, … logged by `add_attention_batch`) at one step, read for the Q/K embedding:
its member probes, their manifests, and one layer's queries and keys pooled over the batch."""

import hashlib
import json
import re

import numpy as np
from tensorboard import errors

from tb_attention.analysis import embedding, recompute
from tb_attention.format import codec, metadata
from tb_attention.serve import lru
from tb_attention.serve.probe_reader import CorruptDataError

_LAYER_ITEMS = 16  # decoded layers (q/k of a whole probe batch: ~3 MB for MiniLM x 1,000 tokens) kept in memory


class Batch:
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
        self.num_layers, self.num_heads = m0.num_layers, m0.num_heads
        self.num_kv_heads, self.d_head = m0.num_kv_heads, m0.d_head
        # Names this batch's data: the wall times change when a run is rewritten, so cached layouts never go stale.
        self.fingerprint = hashlib.sha1(
            json.dumps([run, tag, members, [round(d.wall_time, 6) for d in datums]]).encode()
        ).hexdigest()[:16]


class BatchReader:
    def __init__(self, reader):
        self._reader = reader
        self._layers = lru.Lru(_LAYER_ITEMS)

    def probe_tags(self, ctx, eid):
        """{run: [probe tag]}."""
        return {run: list(tags) for run, tags in self._reader.probes(ctx, eid).items()}

    def members(self, ctx, eid, run, tag):
        probes = self.probe_tags(ctx, eid).get(run)
        if probes is None:
            raise errors.NotFoundError(f"no attention probes in run {run!r}")
        pattern = re.compile(re.escape(tag) + r"/(\d+)$")
        numbered = sorted((int(m.group(1)), t) for t in probes if (m := pattern.match(t)))
        if numbered:
            return [t for _, t in numbered]
        if tag in probes:
            return [tag]
        raise errors.NotFoundError(f"no probe or probe batch {tag!r} in run {run!r}")

    def datums(self, ctx, eid, run, members):
        """[{step: datum}] per member."""
        series = self._reader.read_series(ctx, eid, run, members)
        per_member = []
        for tag in members:
            by_step: dict = {}
            for d in series.get(tag, []):
                by_step.setdefault(d.step, d)
            per_member.append(by_step)
        return per_member

    def manifest(self, ctx, datum):
        return self._reader.manifest(ctx, datum.values)

    def batch(self, ctx, eid, run, tag, step, members=None, per_member=None):
        if members is None:
            members = self.members(ctx, eid, run, tag)
            per_member = self.datums(ctx, eid, run, members)
        missing = [t for t, d in zip(members, per_member) if step not in d]
        if missing:
            raise errors.NotFoundError(
                f"step {step} is not loaded for {len(missing)} probe(s) of {tag!r}, e.g. {missing[0]!r}"
            )
        datums = [d[step] for d in per_member]
        manifests = [self.manifest(ctx, d) for d in datums]
        shapes = {(m.num_layers, m.num_heads, m.num_kv_heads, m.d_head, m.has_qk) for m in manifests}
        if len(shapes) != 1:
            raise errors.InvalidArgumentError(
                f"the probes of {tag!r} disagree on layers/heads/d_head: {sorted(map(str, shapes))}"
            )
        if not manifests[0].has_qk:
            raise errors.NotFoundError(f"queries/keys were not logged for {tag!r} at step {step}")
        return Batch(run, tag, members, datums, manifests, per_member)

    def sibling(self, ctx, batch, step):
        """The same batch at another step (no new listing)."""
        return self.batch(ctx, None, batch.run, batch.tag, step, batch.members, batch.per_member)

    def layer(self, ctx, batch, layer):
        """(q [H, Nq, D], k [Hkv, Nk, D], q_probe, k_probe, masks) of one layer over the batch."""
        return (*self.qk(ctx, batch, layer), self.masks(ctx, batch, layer))

    def qk(self, ctx, batch, layer):
        """(q, k, q_probe, k_probe) of one layer over the batch: all a PCA layout needs (the alignment chain reads
        only this for earlier steps)."""
        return self._layers.get((batch.fingerprint, layer, "qk"), lambda: self._read_qk(ctx, batch, layer))

    def masks(self, ctx, batch, layer):
        """One bool [Q, K] per probe: the keys each query may attend to (for scores and the faithful layout)."""
        return self._layers.get((batch.fingerprint, layer, "masks"), lambda: self._read_masks(ctx, batch, layer))

    def _read_qk(self, ctx, batch, layer):
        qs, ks = [], []
        try:
            for datum, m in zip(batch.datums, batch.manifests):
                blob = self._reader.read_blob(ctx, datum.values[metadata.qk_index(layer, batch.num_layers)])
                _, arrays = codec.unpack(blob)
                q, k = arrays["queries"], arrays["keys"]
                if q.shape != (m.num_heads, m.query_len, m.d_head) or k.shape != (m.num_kv_heads, m.key_len, m.d_head):
                    raise ValueError(f"queries {list(q.shape)} / keys {list(k.shape)} do not match the manifest")
                qs.append(np.asarray(q, np.float32))
                ks.append(np.asarray(k, np.float32))
        except (ValueError, KeyError) as e:
            raise CorruptDataError(f"layer {layer}: stored data cannot be decoded: {e}") from None
        q_probe = np.concatenate([np.full(q.shape[1], i) for i, q in enumerate(qs)])
        k_probe = np.concatenate([np.full(k.shape[1], i) for i, k in enumerate(ks)])
        return np.concatenate(qs, 1), np.concatenate(ks, 1), q_probe, k_probe

    def _read_masks(self, ctx, batch, layer):
        masks = []
        try:
            for datum, m in zip(batch.datums, batch.manifests):
                masks.append(self._mask(ctx, datum, m, layer))
        except (ValueError, KeyError) as e:
            raise CorruptDataError(f"layer {layer}: stored data cannot be decoded: {e}") from None
        return masks

    def _mask(self, ctx, datum, m, layer):
        shape = (m.num_heads, m.query_len, m.key_len)
        if not m.weights_stored(layer):  # a "qk" layer: the mask its recompute parameters define
            entry = m.layers[layer] if m.layers else None
            spec = recompute.Spec.from_layer(dict(entry or {}, bias="none"), m.num_heads, m.num_kv_heads or 1)
            keep = recompute.allowed(spec, np.arange(m.query_len), np.arange(m.key_len))
            return np.ones(shape[1:], bool) if keep is None else keep
        # A weight decodes to 0 exactly when its code is 0 (every row scale is > 0): causal/padding masks are exact
        # zeros, read from the codes without decoding a float.
        blob = codec.decompress(self._reader.read_blob(ctx, datum.values[metadata.attention_index(layer)]))
        meta, arrays = codec.unpack(blob)
        codes = arrays.get("codes")
        if meta.get("encoding") != "cbrt8" or codes is None or codes.dtype != np.uint8 or codes.shape != shape:
            raise ValueError(f"attention is not cbrt8 codes of shape {list(shape)}")
        return (codes != 0).any(0)

    def head(self, ctx, batch, layer, head, masks=True):
        """One head over the batch; beyond `embedding.MAX_POINTS` points, the deterministic sample of them that
        every layout is computed on (`head.index`: the sampled points' indices, queries first; None for all)."""
        q, k, q_probe, k_probe = self.qk(ctx, batch, layer)
        group = q.shape[0] // k.shape[0]
        if not masks:  # "every key of the same probe": enough for PCA, which reads the points only
            h = embedding.Head(q[head], k[head // group], q_probe, k_probe)
        else:
            h = embedding.Head(q[head], k[head // group], q_probe, k_probe, self.masks(ctx, batch, layer))
        sample = embedding.point_sample(q.shape[1], k.shape[1])
        if sample is None:
            return h
        sub = h.subset(*sample)
        sub.index = np.concatenate([sample[0], q.shape[1] + sample[1]])
        return sub
