"""q/k-only storage (store="qk", docs/scale.md): bytes per step computed from the format, and the writer's cost.

Sizes: one layer's blobs are built exactly as the writer builds them (random fp16 q/k, which do not compress, and
the `recompute` container) and multiplied by the layer count, for a 32-layer x 32-head GQA-8 d_head-128 model at
4,096 tokens and for one such layer at 32,768 tokens. Cost: `add_attention(None, queries=, keys=, layers=)` on the
training thread against a plain `clone()` of the same float32 tensors (best of 3), and the background thread's time
per head (normalisers, overview, top-k and per-head metrics rebuilt from q/k).

    python benchmarks/bench_qk_writer.py [--layers 2] [--tokens 4096]
"""

import argparse
import tempfile
import time

import numpy as np
import torch

from tb_attention import AttentionWriter
from tb_attention.analysis import recompute
from tb_attention.format import codec
from tb_attention.write import qk_layers

HEADS, KV_HEADS, D_HEAD = 32, 8, 128


def layer_bytes(tokens, rng):
    """(q/k blob, recompute container) bytes of one layer, built as the writer builds them."""
    q = rng.standard_normal((HEADS, tokens, D_HEAD), np.float32).astype(np.float16)
    k = rng.standard_normal((KV_HEADS, tokens, D_HEAD), np.float32).astype(np.float16)
    qk = len(codec.qk_container(q, k))
    del q, k
    topk = qk_layers.TOPK if tokens <= qk_layers.TOPK_MAX_QUERIES else 0
    side = min(tokens, recompute.OVERVIEW)
    container = codec.recompute_container(
        np.zeros((HEADS, tokens), np.float32),
        np.zeros((HEADS, side, side), np.uint8),
        tokens,
        np.zeros((HEADS, tokens, topk), np.int64),
        np.zeros((HEADS, tokens, topk), np.uint8),
        meta={"k": topk, "checked_rows": 16, "max_error": 0.0},
    )
    return qk, len(container)


def best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2, help="layers in the timed step (the sizes use 32)")
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for layers, tokens in ((32, 4096), (1, 32768)):
        qk, container = layer_bytes(tokens, rng)
        total = layers * (qk + container)
        print(
            f"{layers} layers x {HEADS} heads (GQA {KV_HEADS}, d {D_HEAD}) at {tokens:,} tokens: "
            f"q/k {layers * qk / 1e6:,.1f} MB + recompute containers {layers * container / 1e6:,.1f} MB = "
            f"{total / 1e6:,.1f} MB per step"
        )
    n, t = args.layers, args.tokens
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(n, HEADS, t, D_HEAD, generator=gen)
    k = torch.randn(n, KV_HEADS, t, D_HEAD, generator=gen)
    clone = best(lambda: (q.clone(), k.clone()))
    layers = [{"index": i, "scaling": D_HEAD**-0.5, "mask": "causal", "offset": 0, "bias": "none"} for i in range(n)]
    tokens = [f"t{i}" for i in range(t)]
    calls, background = [], []
    with tempfile.TemporaryDirectory() as tmp, AttentionWriter(tmp, max_pending_bytes=4 << 30) as w:
        for step in range(3):  # written before the next call, as in training: the copy buffers are reused
            start = time.perf_counter()
            w.add_attention("p", None, tokens=tokens, step=step, queries=q, keys=k, layers=layers)
            calls.append(time.perf_counter() - start)
            start = time.perf_counter()
            w.flush()
            background.append(time.perf_counter() - start)
    print(
        f"training thread, {n} layers at {t:,} tokens ({(q.numel() + k.numel()) * 4 / 1e6:,.0f} MB float32 in): "
        f"add_attention {min(calls) * 1e3:.0f} ms (first call, fresh buffers: {calls[0] * 1e3:.0f} ms), "
        f"clone() {clone * 1e3:.0f} ms ({min(calls) / clone:.2f}x)"
    )
    per_head = min(background) / (n * HEADS)
    print(
        f"background thread: {per_head:.3f} s per head (summary and metrics, 1 thread; numpy's BLAS limited to 1 by"
        f" the writer), a 32-layer x {HEADS}-head step at {t:,} tokens {per_head * 32 * HEADS / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
