"""A logdir -> probes (probes.py), read from its event files without a TensorBoard server: the same blobs and
checks as the plugin's reader (format/ decodes and validates them), with every record length bounded
(format/records.py). Local directories only: sync a bucket first (docs/notebook.md)."""

import os

import numpy as np

from tb_attention.format import codec, metadata, records, stats
from tb_attention.format import manifest as manifest_mod
from tb_attention.notebook.probes import Probe, Step, StoredLayer

DEFAULT_MAX_STEPS = 8


class _Series:
    def __init__(self, content):
        self.content = content
        self.data = {}  # {step: (wall_time, value)}; a repeated step keeps its first write, as the plugin does


def _event_files(logdir):
    for root, dirs, files in os.walk(logdir):
        dirs.sort()
        for name in sorted(files):
            if "tfevents" in name:
                yield os.path.relpath(root, logdir), os.path.join(root, name)


def _tensor_value(tensor):
    if tensor.dtype == 7:  # DT_STRING: a probe's blob sequence
        return list(tensor.string_val)
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(tensor)


def scan(logdir):
    """{run: {tag: _Series}} of this plugin's series in the event files under `logdir`."""
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"no such log directory: {logdir!r} (show() reads local directories)")
    runs: dict = {}
    for run, path in _event_files(logdir):
        series = runs.setdefault(run, {})
        for event in records.events(path):  # stops at a truncated last record (a run still being written)
            for value in event.summary.value:
                s = series.get(value.tag)
                if s is None:
                    plugin = value.metadata.plugin_data
                    if plugin.plugin_name != metadata.PLUGIN_NAME:
                        continue
                    content = metadata.parse_plugin_content(plugin.content)  # newer data: UnsupportedVersionError
                    if content is None:
                        continue
                    s = series[value.tag] = _Series(content)
                if event.step not in s.data:
                    s.data[event.step] = (event.wall_time, _tensor_value(value.tensor))
    return {run: tags for run, tags in runs.items() if tags}


def probe_tags(runs):
    """{run: [probe tag]} sorted."""
    return {
        run: sorted(t for t, s in tags.items() if s.content.get("kind") == metadata.KIND_PROBE)
        for run, tags in sorted(runs.items())
    }


def pick_steps(available, steps, max_steps):
    """The steps to embed: `steps` ("all", or a list), else at most `max_steps`, evenly spaced, first and last kept."""
    if steps == "all":
        return list(available)
    if steps is not None:
        wanted = [int(s) for s in ([steps] if isinstance(steps, (int, np.integer)) else steps)]
        missing = [s for s in wanted if s not in available]
        if missing:
            raise ValueError(f"steps {missing} were not logged; logged steps: {_span(available)}")
        return sorted(set(wanted))
    if len(available) <= max_steps:
        return list(available)
    picks = np.unique(np.round(np.linspace(0, len(available) - 1, max(1, max_steps))).astype(int))
    return [available[i] for i in picks]


def _span(steps):
    return ", ".join(map(str, steps)) if len(steps) <= 12 else f"{len(steps)} steps from {steps[0]} to {steps[-1]}"


def step_from_blobs(blobs, where):
    """One stored probe step (its blob list) -> Step, every blob decoded and checked."""
    try:
        manifest = manifest_mod.decode(blobs[metadata.MANIFEST_INDEX])
        if len(blobs) != manifest.blob_count():
            raise ValueError(f"step has {len(blobs)} blobs, its manifest describes {manifest.blob_count()}")
        qk_only = [i for i in range(manifest.num_layers) if not manifest.weights_stored(i)]
        if qk_only:
            raise NotImplementedError(
                f"{where}: layers {qk_only} were stored as queries and keys only (store='qk'); notebook outputs of "
                "such steps are not supported yet: open them in TensorBoard, or log them with store='both'"
            )
        layers = [StoredLayer(codec.decompress(blobs[metadata.attention_index(i)])) for i in range(manifest.num_layers)]
        qk = None
        if manifest.has_qk:
            qk = [
                codec.decompress(blobs[metadata.qk_index(i, manifest.num_layers)]) for i in range(manifest.num_layers)
            ]
            for c in qk:
                codec.unpack(c)  # never hand the browser something it cannot decode
        png = None
        if manifest.image:
            from tb_attention.format import image

            png = bytes(blobs[int(manifest.image["index"])])
            image.check_png(png, int(manifest.image["width"]), int(manifest.image["height"]))
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{where}: stored data cannot be decoded: {e}") from None
    return Step(manifest.raw, layers, qk, png)


def head_stats_of(tags, tag):
    """The `head_stats` container of probe `tag`, or None when no metrics were logged for it."""
    metric = {
        s.content["stat"]: s
        for s in tags.values()
        if s.content.get("kind") == metadata.KIND_HEAD_STATS and s.content.get("probe") == tag
    }
    if not metric:
        return None
    values = {stat: {step: np.asarray(v) for step, (_, v) in s.data.items()} for stat, s in metric.items()}
    walls: dict = {}
    for s in metric.values():
        for step, (wall, _) in s.data.items():
            walls.setdefault(step, wall)
    crc = tags.get(metadata.stats_crc_tag(tag))
    checksums = {} if crc is None else {step: stats.stored_crc(v) for step, (_, v) in crc.data.items()}
    layers = stats.series_layers(metric[stat].content for stat in sorted(metric))  # as the plugin: tag-name order
    return stats.head_stats(values, walls, checksums, layers)


def load(logdir, probe=None, run=None, steps=None, max_steps=DEFAULT_MAX_STEPS):
    """-> ([Probe], notes): probe `probe` (default: the first) of every run that has it (or of `run` only), with
    its encoder/decoder/cross parts when it has them, and the chosen steps."""
    runs = scan(os.fspath(logdir))
    tags = probe_tags(runs)
    everything = sorted({t for ts in tags.values() for t in ts})
    if not everything:
        raise ValueError(f"no attention probes in {os.fspath(logdir)!r} (log some with AttentionWriter)")
    if run is not None and run not in tags:
        raise ValueError(f"no run {run!r} in {os.fspath(logdir)!r}; runs: {sorted(tags)}")
    base = probe if probe is not None else everything[0].rsplit("/", 1)[0] if _is_part(everything[0]) else everything[0]
    wanted = [t for t in everything if t == base or (_is_part(t) and t.rsplit("/", 1)[0] == base)]
    if not wanted:
        raise ValueError(f"no probe {probe!r} in {os.fspath(logdir)!r}; probes: {everything}")
    probes, notes = [], []
    for r, run_tags in tags.items():
        if run is not None and r != run:
            continue
        for tag in run_tags:
            if tag not in wanted:
                continue
            series = runs[r][tag]
            available = sorted(series.data)
            chosen = pick_steps(available, steps, max_steps)
            if len(chosen) < len(available):
                notes.append(
                    f"{r} / {tag}: {len(chosen)} of {len(available)} logged steps embedded ({_span(chosen)}); "
                    "pass steps=[...] or steps='all' for others"
                )
            embedded = {s: step_from_blobs(series.data[s][1], f"{r} / {tag} step {s}") for s in chosen}
            walls = {s: series.data[s][0] for s in chosen}
            probes.append(Probe(r, tag, embedded, walls, head_stats_of(runs[r], tag)))
    return probes, notes


def _is_part(tag):
    return tag.rsplit("/", 1)[-1] in ("encoder", "decoder", "cross")
