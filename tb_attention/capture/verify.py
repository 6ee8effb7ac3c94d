"""Self-check: the captured weights against the model's own eager attention on the same input."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .inputs import to_device


@dataclass
class VerifyReport:
    """Maximum |captured - eager| per (stream, layer), over non-padding query rows and key columns."""

    method: str
    diffs: dict[tuple[str, int], float]
    atol: float

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return bool(self.diffs) and self.max_diff <= self.atol

    def __str__(self) -> str:
        lines = [f"tb_attention verify ({self.method}): {'OK' if self.ok else 'FAILED'}, max diff {self.max_diff:.2e}"]
        lines += [f"  {stream:>8} layer {layer:>2}: {d:.2e}" for (stream, layer), d in sorted(self.diffs.items())]
        if self.method == "output_attentions":
            lines.append("  (fallback: the weights are eager's own, so this only checks the plumbing)")
        return "\n".join(lines)


def verify(cap, session_class, atol: float = 1e-5) -> VerifyReport:
    """Run the last captured input again, in eval mode without gradients, once through the capture path and once
    through eager attention, and compare the attention weights layer by layer. `session_class` is the
    CaptureSession (passed in, so that this module does not import the session that records what it checks)."""
    if cap.inputs is None:
        raise ValueError("nothing to verify: run the model inside the capture block first")
    model = cap.model
    args, kwargs = to_device(cap.inputs)
    if any(kwargs.get(name) is not None for name in ("past_key_values", "cache")):
        # The cache object was updated by that forward pass, so replaying it would attend over other keys.
        raise ValueError("verify() needs a forward pass without a KV cache (e.g. not a generate() step)")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # dropout would make eager's returned weights differ from the pre-dropout probabilities
    try:
        with torch.no_grad():
            ours = _run(session_class, model, cap, args, kwargs, reference=False)
            eager = _run(session_class, model, cap, args, kwargs, reference=True)
    finally:
        for m, training in modes:
            m.training = training
    diffs = {}
    for stream, recs in ours.streams.items():
        ref = {r.layer: r for r in eager.streams.get(stream, [])}
        for r in recs:
            diffs[(stream, r.layer)] = _max_diff(r, ref[r.layer]) if r.layer in ref else float("inf")
    return VerifyReport(cap.method, diffs, atol)


def _run(session_class, model, cap, args, kwargs, reference: bool):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="tb_attention:")  # the user saw the fallback warning already
        session = session_class(model, cap.layers, cap.heads, qk=False, dtype=torch.float32, reference=reference)
        with session as result:
            model(*args, **kwargs)
    return result


def _max_diff(a, b) -> float:
    worst = 0.0
    for row in range(a.weights.shape[0]):
        q, k = a.query_valid[row], a.key_valid[row]
        d = (a.weights[row][:, q][:, :, k] - b.weights[row][:, q][:, :, k]).abs()
        worst = max(worst, d.max().item() if d.numel() else 0.0)
    return worst
