"""One architecture of the capture sweep: capture under the default implementation, compare with eager.

`check(model, inputs)` returns a dict: the capture method, whether the outputs were bit-identical, the largest
difference between the captured weights and transformers' own eager `output_attentions` (every attention field of
the output, nested tower outputs included, matched to a captured stream), whether the stored q/k and recompute
parameters reproduce the weights (`LayerRecord.recompute()`), a status and a reason.
"""

from __future__ import annotations

import warnings

import torch

import tb_attention.capture as tc
from tb_attention.capture.configs import switch_attention

EXACT = 1e-5  # captured vs eager weights
QK_EXACT = 1e-3  # weights recomputed from the stored q/k and parameters vs the captured weights (float32)


def flatten(obj, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a (nested) model output, with its path."""
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if hasattr(obj, "items") and not isinstance(obj, torch.Tensor):
        return [t for k, v in obj.items() for t in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [t for i, v in enumerate(obj) for t in flatten(v, f"{prefix}[{i}]")]
    return []


def outputs_identical(a, b) -> tuple[bool, str]:
    fa, fb = flatten(a), flatten(b)
    if [p for p, _ in fa] != [p for p, _ in fb]:
        return False, "the outputs have different fields"
    for (path, x), (_, y) in zip(fa, fb):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, f"{path}: shape/dtype differ"
        if not torch.equal(x, y) and not _equal_with_nan(x, y):
            return False, f"{path}: differs by {(x.double() - y.double()).abs().nan_to_num(0).max().item():.2e}"
    return True, ""


def _equal_with_nan(x, y) -> bool:
    if not x.is_floating_point():
        return False
    return bool(torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(0), y.nan_to_num(0)))


def attention_fields(output, prefix: str = "") -> dict[str, list[torch.Tensor]]:
    """Per-layer attention tensors in an output: every `*attentions` field, also inside nested tower outputs."""
    fields = {}
    if not hasattr(output, "items"):
        return fields
    for key, value in output.items():
        path = f"{prefix}.{key}" if prefix else key
        if key.endswith("attentions") and isinstance(value, (list, tuple)):
            layers = [t for t in _flat(value) if isinstance(t, torch.Tensor) and t.dim() == 4]
            if layers:
                fields[path] = layers
        elif hasattr(value, "items"):
            fields.update(attention_fields(value, path))
    return fields


def _flat(value):
    for v in value:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def eager_attentions(model, inputs, with_output: bool = False):
    restore = switch_attention(model, lambda current: "eager")
    try:
        with torch.no_grad():
            torch.manual_seed(0)
            try:
                out = model(**inputs, output_attentions=True)
            except TypeError:
                configs = [
                    m.config for m in model.modules() if hasattr(getattr(m, "config", None), "output_attentions")
                ]
                for c in configs:
                    c.output_attentions = True
                try:
                    out = model(**inputs)
                finally:
                    for c in configs:
                        c.output_attentions = False
    finally:
        restore()
    return (attention_fields(out), out) if with_output else attention_fields(out)


def divergence(a, b) -> float:
    """Largest |a - b| / (1 + max |b|) over the float tensors two outputs share (paths that match)."""
    fb = dict(flatten(b))
    worst = 0.0
    for path, x in flatten(a):
        y = fb.get(path)
        if y is None or y.shape != x.shape or not x.is_floating_point() or "attentions" in path:
            continue
        d = (x.double() - y.double()).abs().nan_to_num(0).max().item() / (1 + y.double().abs().nan_to_num(0).max())
        worst = max(worst, float(d))
    return worst


def match(fields: dict, cap) -> dict[str, tuple[str | None, float]]:
    """Each eager field -> (the captured stream that reproduces it best, max |difference|); (None, inf) if none."""
    streams = {name: [r.weights.float() for r in recs] for name, recs in cap.streams.items()}
    result = {}
    for field, layers in fields.items():
        best = (None, float("inf"), float("inf"))
        for name, recs in streams.items():
            if len(recs) == len(layers) and all(r.shape == e.shape for r, e in zip(recs, layers)):
                diffs = [_diff(r, e) for r, e in zip(recs, layers)]
                best = min(best, (name, max(diffs), diffs[0]), key=lambda b: b[1])
        if best[0] is None:
            best = _by_layer(layers, cap)
        result[field] = best
    return result


def _by_layer(layers, cap):
    """Fallback when no stream lines up with an eager field as a whole (BridgeTower interleaves its text and image
    layers in one tuple): each eager tensor against the captured record of its shape that matches it best."""
    records = [r.weights.float() for recs in cap.streams.values() for r in recs]
    diffs = []
    for e in layers:
        same = [_diff(r, e) for r in records if r.shape == e.shape]
        if not same:
            return (None, float("inf"), float("inf"))
        diffs.append(min(same))
    return ("(layer by layer)", max(diffs), diffs[0])


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a.float() - b.float()).abs()
    if d.isnan().any():
        return float("inf")  # a NaN on one side only is no match
    return float(d.max()) if d.numel() else 0.0


def qk_consistency(cap) -> float | None:
    """Largest |recompute() - weights| over records with q/k; None when no record has q/k."""
    worst = None
    for recs in cap.streams.values():
        for r in recs:
            if r.has_qk:
                d = _diff(r.recompute(), r.weights)
                worst = d if worst is None else max(worst, d)
    return worst


def check(model, inputs) -> dict:
    """The sweep's verdict for one model; when transformers' default implementation and its eager one compute
    different things (outputs apart by more than rounding), eager cannot serve as the reference for the default, and
    the model is checked again with eager as its own implementation."""
    row = _check(model, inputs)
    if row["status"] == "inexact" and row.get("divergence", 0) > DIVERGED:
        # The two implementations compute different attention in transformers (ColPali: SDPA gets no mask and
        # is_causal=False, eager a causal mask): eager is no reference for the default. Say what eager gives.
        restore = switch_attention(model, lambda current: "eager")
        try:
            again = _check(model, inputs)
        finally:
            restore()
        row["reason"] += (
            f"; transformers' default implementation and eager disagree (outputs {row['divergence']:.1e} apart), so "
            f"eager is no reference for it; a capture under eager is {again['status']} ({_fmt(again['max_diff'])})"
        )
        return row
    if row["status"] != "inexact" or not row.get("divergence") or row.get("first_layers", 1.0) > EXACT:
        return row
    # The first layer of every stream matches, the outputs of the two implementations drift apart: compare the
    # capture of an eager forward with eager's weights instead.
    restore = switch_attention(model, lambda current: "eager")
    try:
        again = _check(model, inputs)
    finally:
        restore()
    if again["status"] != "exact":
        row["reason"] += f"; under eager too: {again['status']} {_fmt(again['max_diff'])}"
        return row
    again["reason"] = (
        f"checked under eager: the default implementation's outputs drift from eager's ({row['divergence']:.1e}), "
        f"so deeper layers see other inputs (max diff under the default {row['max_diff']:.1e}, first layers "
        f"{row['first_layers']:.1e})"
    )
    return again


DIVERGED = 1e-3  # relative output difference beyond rounding between the default implementation and eager


def _fmt(x):
    return "–" if x is None else f"{x:.1e}"


def _check(model, inputs) -> dict:
    row = {"method": "", "identical": None, "max_diff": None, "qk": None, "streams": {}, "status": "", "reason": ""}
    torch.manual_seed(0)  # models that draw random numbers in forward (ViT-MAE's masking) draw the same ones
    with torch.no_grad():
        expected = model(**inputs)
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            with tc.capture(model, dtype=torch.float32) as cap:
                torch.manual_seed(0)
                got = model(**inputs)
    except Exception as e:  # noqa: BLE001 - the sweep reports every failure
        fields = _eager_or_none(model, inputs)
        if fields == {} and "no attention" in str(e):
            return {**row, "status": "no attention", "reason": f"clear error: {_short(e)}"}
        if str(e).startswith("tb_attention: cannot capture"):
            return {**row, "status": "unsupported", "reason": f"clear error: {_short(e)}"[:300]}
        return {**row, "status": "capture error", "reason": _short(e)}
    row["method"] = cap.method
    row["identical"], why = outputs_identical(expected, got)
    row["streams"] = {name: len(recs) for name, recs in cap.streams.items()}
    try:
        fields, eager_out = eager_attentions(model, inputs, with_output=True)
    except Exception as e:  # noqa: BLE001
        return {**row, "status": "no reference", "reason": f"transformers' eager attention fails: {_short(e)}"}
    row["divergence"] = divergence(eager_out, expected)
    if not fields:
        if not cap.streams:
            return {**row, "status": "no attention", "reason": "eager returns no attention; nothing captured"}
        return {**row, "status": "no reference", "reason": "eager returns no attention weights to compare"}
    if any(t.isnan().any() for layers in fields.values() for t in layers):
        return {**row, "status": "no reference", "reason": "transformers' eager weights contain NaN"}
    matched = match(fields, cap)
    row["max_diff"] = max(d for _, d, _ in matched.values())
    row["first_layers"] = max(f for _, _, f in matched.values())
    try:
        row["qk"] = qk_consistency(cap)
    except Exception as e:  # noqa: BLE001
        row["qk"] = float("inf")
        row["reason"] = f"recompute: {_short(e)}; "
    missing = [f for f, (s, _, _) in matched.items() if s is None]
    if missing:
        have = {k: v for k, v in row["streams"].items()}
        need = {f: len(v) for f, v in fields.items()}
        return {**row, "status": "missing", "reason": row["reason"] + f"eager {need}, captured {have}"}
    if not row["identical"]:
        return {**row, "status": "outputs differ", "reason": row["reason"] + why}
    if row["max_diff"] > EXACT:
        worst = max(matched.items(), key=lambda kv: kv[1][1])
        return {**row, "status": "inexact", "reason": row["reason"] + f"{worst[0]} vs stream {worst[1][0]!r}"}
    del caught
    return {**row, "status": "exact"}


def _eager_or_none(model, inputs):
    try:
        return eager_attentions(model, inputs)
    except Exception:  # noqa: BLE001
        return None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:200]
