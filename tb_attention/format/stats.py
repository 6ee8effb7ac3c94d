"""The `head_stats` answer from the per-head metric series of a probe: one [S, L, H] array per metric over the union
of their steps, NaN where a metric was not logged or its step's checksum fails (docs/http_api.md). Shared by the
plugin (serve/plugin.py, reading through the data provider) and notebook outputs (notebook/logdir.py, reading the
event files), so both answer the same bytes for the same series."""

import numpy as np

from tb_attention.format import codec


def damaged_steps(values, crcs):
    """Steps whose metric values do not match the checksum written with them. `values`: {stat: {step: array}};
    `crcs`: {step: the stored checksum, or None when unreadable}. Steps without a checksum (older data) pass."""
    damaged = set()
    for step, expected in crcs.items():
        row = {stat: by_step[step] for stat, by_step in values.items() if step in by_step}
        if expected is None or codec.stats_crc(row) != expected:
            damaged.add(step)
    return damaged


def head_stats(values, walls, crcs, layers=None):
    """-> the `head_stats` container. `values`: {stat: {step: array [L, H]}}; `walls`: {step: wall time};
    `layers`: the series' optional model numbering (docs/format.md), passed on in `meta.layers` when it fits [L, H].

    Raises ValueError when a metric changes shape between steps (damaged or mixed data)."""
    damaged = damaged_steps(values, crcs)
    steps = sorted(walls)
    index = {s: i for i, s in enumerate(steps)}
    arrays = {
        "steps": np.array(steps, np.float64),
        "wall_times": np.array([walls[s] for s in steps], np.float64),
    }
    for stat, by_step in sorted(values.items()):  # in name order: the same bytes whichever order they were read
        shapes = {np.shape(v) for v in by_step.values()}
        if len(shapes) != 1:
            raise ValueError(f"statistic {stat!r} changes shape between steps: {sorted(shapes)}")
        out = np.full((len(steps),) + shapes.pop(), np.nan, np.float32)
        for s, v in by_step.items():
            if s not in damaged:  # a step whose checksum fails shows as a gap, never as wrong numbers
                out[index[s]] = v
        arrays[stat] = out
    meta = {"stats": sorted(values), "damaged_steps": sorted(damaged)}
    shape = next((a.shape[1:] for k, a in arrays.items() if k not in ("steps", "wall_times")), None)
    numbering = model_numbering(layers, shape)
    if numbering is not None:
        meta["layers"] = numbering
    return codec.pack(arrays, meta)


def series_layers(contents):
    """The `layers` of a probe's metric series, from their plugin contents in name order (every series of a probe
    carries the same list; the first that has one is taken), or None."""
    for content in contents:
        if content.get("layers") is not None:
            return content["layers"]
    return None


def model_numbering(layers, shape):
    """`layers` reduced to `[{"index", "heads"?}]` when it names every row of the [L, H] metrics (distinct layer
    indices, H head indices each), else None: a numbering that does not fit is dropped, and the dashboard falls
    back to stored positions, rather than failing the metrics over their labels."""
    if not isinstance(layers, list) or shape is None or len(shape) != 2 or len(layers) != shape[0]:
        return None
    out = []
    for entry in layers:
        if not isinstance(entry, dict) or not _is_index(entry.get("index")):
            return None
        item = {"index": entry["index"]}
        heads = entry.get("heads")
        if heads is not None:
            if not isinstance(heads, list) or len(heads) != shape[1] or not all(_is_index(h) for h in heads):
                return None
            if len(set(heads)) != len(heads):
                return None
            item["heads"] = list(heads)
        out.append(item)
    if len({e["index"] for e in out}) != len(out):
        return None
    return out


def _is_index(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 20


def stored_crc(value):
    """The checksum an int64 scalar holds, or None when it cannot be read."""
    try:
        return int(np.asarray(value).reshape(-1)[0])
    except (ValueError, TypeError, IndexError):
        return None
