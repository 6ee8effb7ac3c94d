"""Concurrent clients against a real TensorBoard: p50/p95 latency per route, errors, server memory.

Default: 100 steps x 12 layers x 12 heads at 256 tokens (~0.8 GB of attention), 20 client threads, both loaders.
Then a 10,000-step run of a small probe: the server's memory before and after every step's tokens were requested.

    python benchmarks/bench_load.py [--steps 100] [--clients 20] [--requests 60]
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tb_attention import AttentionWriter  # noqa: E402
from tests.conftest import start_tensorboard  # noqa: E402


def write_run(root, steps, layers, heads, tokens):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(layers, heads, tokens, tokens)).astype(np.float32) * 3
    with AttentionWriter(str(root / "run")) as w:
        for step in range(steps):
            logits = base + rng.normal(size=(1, heads, tokens, tokens)).astype(np.float32)
            attn = np.exp(logits - logits.max(-1, keepdims=True))
            attn /= attn.sum(-1, keepdims=True)
            w.add_attention("probe", attn, tokens=[f"t{i}" for i in range(tokens)], step=step)


def get(url):
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, (time.perf_counter() - t) * 1e3


def rss_mb(pid):
    """Resident memory of a process and its children (the Rust data server is a child), MB."""
    import subprocess

    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True, text=True)
    return sum(int(x) for x in out.stdout.split()) / 1024


def wait_loaded(plugin, steps, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(plugin + "steps?run=run&tag=probe", timeout=60) as resp:
                if len(json.loads(resp.read())["steps"]) == steps:
                    return
        except urllib.error.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("data did not load")


def load_test(root, load_fast, args):
    proc, base = start_tensorboard(root, f"--load_fast={load_fast}", "--reload_interval=0")
    plugin = base + "data/plugin/attention/"
    try:
        t = time.time()
        wait_loaded(plugin, args.steps)
        loaded_s = time.time() - t
        latencies, errors = {}, []
        lock = threading.Lock()

        def client(seed):
            rnd = random.Random(seed)
            for _ in range(args.requests):
                step, layer = rnd.randrange(args.steps), rnd.randrange(args.layers)
                route, query = rnd.choice(
                    [
                        ("runs", ""),
                        ("steps", "run=run&tag=probe"),
                        ("tokens", f"run=run&tag=probe&step={step}"),
                        ("attention", f"run=run&tag=probe&step={step}&layer={layer}"),
                        ("attention", f"run=run&tag=probe&step={step}&layer={layer}"),
                        ("head_stats", "run=run&tag=probe"),
                    ]
                )
                status, ms = get(f"{plugin}{route}?{query}")
                with lock:
                    latencies.setdefault(route, []).append(ms)
                    if status != 200:
                        errors.append((route, status))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t = time.time()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.time() - t
        print(
            f"\n### load_fast={load_fast}: data visible after {loaded_s:.1f} s; {args.clients} clients x "
            f"{args.requests} requests in {wall:.1f} s; errors: {len(errors)}; server RSS {rss_mb(proc.pid):.0f} MB"
        )
        print("| route | requests | p50 ms | p95 ms |\n|---|---|---|---|")
        for route, ms in sorted(latencies.items()):
            ms.sort()
            print(f"| {route} | {len(ms)} | {statistics.median(ms):.0f} | {ms[int(0.95 * (len(ms) - 1))]:.0f} |")
    finally:
        proc.kill()


def long_run_memory(steps=10_000):
    root = Path(tempfile.mkdtemp(prefix="bench_long_"))
    rng = np.random.default_rng(0)
    attn = rng.random((2, 2, 8, 8), dtype=np.float32)
    attn /= attn.sum(-1, keepdims=True)
    with AttentionWriter(str(root / "run")) as w:
        for step in range(steps):
            w.add_attention("probe", attn, tokens=[str(i) for i in range(8)], step=step)
    proc, base = start_tensorboard(root, "--reload_interval=0")
    plugin = base + "data/plugin/attention/"
    try:
        wait_loaded(plugin, steps)
        before = rss_mb(proc.pid)
        ms = [get(f"{plugin}tokens?run=run&tag=probe&step={s}")[1] for s in range(0, steps, 10)]
        after = rss_mb(proc.pid)
        print(
            f"\n### {steps}-step run: server RSS {before:.0f} MB before, {after:.0f} MB after requesting "
            f"{len(ms)} different steps' tokens; tokens p50 {statistics.median(ms):.0f} ms"
        )
    finally:
        proc.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_load_"))
    t = time.time()
    write_run(root, args.steps, args.layers, args.heads, args.tokens)
    print(f"wrote {args.steps} steps of {args.layers}x{args.heads}x{args.tokens}^2 in {time.time() - t:.0f} s")
    for load_fast in ("true", "false"):
        load_test(root, load_fast, args)
    long_run_memory()


if __name__ == "__main__":
    main()
