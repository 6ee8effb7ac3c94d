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


def head_stats(values, walls, crcs):
    """-> the `head_stats` container. `values`: {stat: {step: array [L, H]}}; `walls`: {step: wall time}.

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
    return codec.pack(arrays, meta)


def stored_crc(value):
    """The checksum an int64 scalar holds, or None when it cannot be read."""
    try:
        return int(np.asarray(value).reshape(-1)[0])
    except (ValueError, TypeError, IndexError):
        return None
