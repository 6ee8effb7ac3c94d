"""Writer cost per logged step: bytes on disk and time on the training thread, 6 layers x 12 heads.

Baselines in the same run: the raw float32 size of the same arrays, and a bare `clone()` of them (the least any
writer that must not hold references to the caller's tensors pays on the training thread).
Targets (issue 3): <= 20 MB per step and <= 10 ms of add_attention at 512 tokens.

    python benchmarks/bench_writer.py [--repeats 7]
"""

import argparse
import os
import statistics
import tempfile
import time

import torch

from tb_attention import AttentionWriter

LAYERS, HEADS, D_HEAD = 6, 12, 32


def probe(tokens, seed=0):
    g = torch.Generator().manual_seed(seed)
    attn = (torch.randn(LAYERS, HEADS, tokens, tokens, generator=g) * 3).softmax(-1)
    q = torch.randn(LAYERS, HEADS, tokens, D_HEAD, generator=g)
    return list(attn), list(q), list(q.clone())


def measure(tokens, repeats, with_qk):
    attn, q, k = probe(tokens)
    logdir = tempfile.mkdtemp(prefix=f"bench{tokens}_")
    add_ms, clone_ms = [], []
    with AttentionWriter(logdir) as w:
        for step in range(repeats):
            w.flush()  # time the training thread alone, not its contention with the previous step's encoding
            t = time.perf_counter()
            [a.clone() for a in attn] + ([x.clone() for x in q + k] if with_qk else [])
            clone_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            w.add_attention(
                "probe",
                attn,
                tokens=[f"t{i}" for i in range(tokens)],
                step=step,
                queries=q if with_qk else None,
                keys=k if with_qk else None,
            )
            add_ms.append((time.perf_counter() - t) * 1e3)
    size = sum(os.path.getsize(os.path.join(logdir, f)) for f in os.listdir(logdir))
    return size / repeats, statistics.median(add_ms), statistics.median(clone_ms)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    print("| tokens | q/k | MB per step | raw float32 MB | add_attention ms (median) | clone baseline ms |")
    print("|---|---|---|---|---|---|")
    for tokens in (64, 128, 256, 512):
        for with_qk in (False, True):
            size, add_ms, clone_ms = measure(tokens, args.repeats, with_qk)
            raw = LAYERS * HEADS * tokens * (tokens + (2 * D_HEAD if with_qk else 0)) * 4
            print(
                f"| {tokens} | {'yes' if with_qk else 'no'} | {size / 1e6:.2f} | {raw / 1e6:.2f} "
                f"| {add_ms:.1f} | {clone_ms:.1f} |"
            )


if __name__ == "__main__":
    main()
