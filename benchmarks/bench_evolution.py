"""Attention-evolution benchmarks (numbers in the README).

1. Overhead of logging per-head metrics every step on the tiny copy-task GPT (examples/train_copy.py): training
   step time without logging vs with a probe forward + `add_metrics` every step. Target: ≤ 5 %.
2. Evolution dashboard: 1,000 steps × 72 heads of metrics, TensorBoard (Python loader) + Chromium: metrics load
   and draw time, and tab switch → painted. Target: ≤ 2 s.

    python benchmarks/bench_evolution.py [--steps 300] [--skip-browser]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))


def overhead(steps, repeats, threads):
    import torch

    torch.set_num_threads(threads)
    import train_copy
    from torch.nn import functional as F

    from tb_attention import AttentionWriter

    torch.manual_seed(0)
    model = train_copy.TinyGPT(len(train_copy.WORDS) + 1, 25)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    probe = train_copy.batch(1, 12, torch.Generator().manual_seed(12345))
    tokens = ["<bos>"] + [train_copy.WORDS[i] for i in probe[0, 1:].tolist()]

    def train_step():
        ids, half = train_copy.random_length_batch(64, 12, gen)
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits[:, half + 1 :].reshape(-1, logits.shape[-1]), ids[:, half + 2 :].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def log_metrics(writer, step):
        model.eval()
        with torch.no_grad():
            _, seen = model(probe)
        model.train()
        writer.add_metrics("probe/repeat", [w[0] for w, _, _ in seen], step=step, tokens=tokens)

    for _ in range(20):
        train_step()  # warm-up

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()  # process CPU: all threads, incl. the writer's
        fn()
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    def plain():
        for _ in range(steps):
            train_step()

    def with_metrics(writer, first):
        def run():
            for i in range(steps):
                train_step()
                log_metrics(writer, first + i)
            writer.flush()  # the background metrics work is included in the measurement

        return run

    def with_forward():
        for _ in range(steps):
            train_step()
            model.eval()
            with torch.no_grad():
                model(probe)
            model.train()

    runs = {"plain": [], "forward": [], "metrics": []}
    logdir = tempfile.mkdtemp()
    with AttentionWriter(logdir) as writer:
        for r in range(repeats):  # interleaved, so drift in machine load hits all alike
            runs["plain"].append(timed(plain))
            runs["forward"].append(timed(with_forward))
            runs["metrics"].append(timed(with_metrics(writer, r * steps)))
    shutil.rmtree(logdir)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    (bw, bc), (fw, fc), (mw, mc) = med["plain"], med["forward"], med["metrics"]
    print(f"tiny GPT, batch 64, torch threads = {threads}; median of {repeats} x {steps} steps (wall / process CPU)")
    print(f"  training step:                          {bw * 1e3:7.2f} ms / {bc * 1e3:7.2f} ms")
    print(f"  + probe forward (user's model):         {fw * 1e3:7.2f} ms / {fc * 1e3:7.2f} ms")
    print(f"  + probe forward + add_metrics:          {mw * 1e3:7.2f} ms / {mc * 1e3:7.2f} ms")
    print(
        f"  tb-attention's share (add_metrics, background metrics + write): "
        f"{100 * (mw - fw) / bw:5.1f} % wall, {100 * (mc - fc) / bc:5.1f} % CPU   (target <= 5 %)"
    )
    print(
        f"  everything, incl. the probe forward:    {100 * (mw - bw) / bw:5.1f} % wall, {100 * (mc - bc) / bc:5.1f} % CPU"
    )


def dashboard():
    import tests.conftest as conftest
    from tb_attention import AttentionWriter
    from tests.browser_util import CHROMIUM_ARGS, chromium_path

    L, H, T = 6, 12, 16
    root = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    attn = conftest.softmax_attention(rng, L, H, T)
    t = time.perf_counter()
    with AttentionWriter(os.path.join(root, "run")) as w:
        for step in range(1000):
            w.add_metrics("probe", attn, step=step, tokens=[str(i % 5) for i in range(T)])
            if step % 100 == 0:
                w.add_attention("probe", attn, tokens=[f"t{i}" for i in range(T)], step=step)
    print(f"writing 1,000 metric steps x 72 heads:   {time.perf_counter() - t:7.2f} s")
    proc, url = conftest.start_tensorboard(root, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "data/plugin_entry.html?name=attention")
            page.wait_for_selector("body[data-state=ready]", timeout=60_000)
            page.evaluate("() => { window.__t0 = performance.now(); }")
            page.click(".tba-tab[data-view='evolution']")
            page.wait_for_selector("body[data-state=ready][data-painted-view=evolution]", timeout=30_000)
            total = page.evaluate("() => performance.now() - window.__t0")
            timing = page.evaluate("() => window.__tbaEvolution")
            browser.close()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(root)
    print(f"evolution view, {timing['steps']} steps x {timing['series']} heads:")
    print(f"  metrics load (head_stats route + decode): {timing['loadMs']:7.0f} ms")
    print(f"  grid + small multiples draw:              {timing['drawMs']:7.0f} ms")
    print(f"  tab click -> painted (incl. rank, rollout): {total:5.0f} ms   (target <= 2000 ms)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: no OpenMP spin-waits competing with the writer thread on a small machine)",
    )
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    overhead(args.steps, args.repeats, args.threads)
    if not args.skip_browser:
        dashboard()


if __name__ == "__main__":
    main()
