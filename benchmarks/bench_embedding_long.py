"""Q/K embedding at 1,000 tokens in one probe (issue 12): MiniLM's shape (6 layers × 12 heads, d_head 32), one causal
probe of 1,000 tokens with structured q/k (a local band, a sink, content matches; as benchmarks/bench_scale.py's
`minilm1k`), stored as weights and q/k at two steps, served by the real routes.

Measured, cold (a fresh server and layout cache for each line):
  * PCA of one head (`embedding`, method=pca: the alignment chain over both steps, the scores);
  * the default (faithful) layout per head: `embedding?method=faithful` until 200, for 3 heads (the first one
    includes the worker process's start);
  * the `embedding_matrix` route for all 72 PCA heads in one request, and for one layer (`layers=0`: what the view's
    first paint waits for);
  * unless --no-browser, Chromium on a TensorBoard process: Q/K tab click → painted (the shell's `ready` + a frame,
    from the head view already painted), then until all 72 PCA heads, then until every faithful layout.

    python benchmarks/bench_embedding_long.py [--no-browser] [--logdir DIR]
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N, D, L, H = 1000, 32, 6, 12
RUN, TAG = "minilm1k", "probe"


def structured(seed):
    rng = np.random.default_rng(seed)
    pos = np.arange(N)[:, None] / 64.0
    freqs = rng.uniform(0.2, 3.0, D // 2)
    rot = np.concatenate([np.sin(pos * freqs), np.cos(pos * freqs)], axis=1).astype(np.float32)
    qs, ks = [], []
    for _ in range(L):
        k = rng.normal(0, 0.6, (H, N, D)).astype(np.float32) + 2.0 * rot
        q = rng.normal(0, 0.6, (H, N, D)).astype(np.float32) + 2.0 * rot
        k[:, 0] += 4.0  # an attention sink on the first token
        qs.append(q.astype(np.float16))
        ks.append(k.astype(np.float16))
    return qs, ks


def softmax(q, k):
    logits = np.einsum("hqd,hkd->hqk", q.astype(np.float32), k.astype(np.float32)) * D**-0.5
    logits = np.where(np.tril(np.ones((N, N), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def write(logdir):
    from tb_attention import AttentionWriter

    with AttentionWriter(str(logdir / RUN)) as w:
        for step in (0, 100):
            qs, ks = structured(step)
            attn = [softmax(q, k) for q, k in zip(qs, ks)]
            w.add_attention(TAG, attn, tokens=[f"w{i % 200}" for i in range(N)], step=step, queries=qs, keys=ks)


def server(logdir):
    from tests.conftest import Loaded, _python_loader

    loaded = Loaded(_python_loader(str(logdir))[0])
    loaded.plugin._embedding._layouts.cache_dir = tempfile.mkdtemp()
    return loaded


def timed(loaded, route, **params):
    t0 = time.perf_counter()
    resp = loaded.get(route, run=RUN, tag=TAG, step=100, **params)
    assert resp.status_code in (200, 202), resp.get_data(as_text=True)
    return time.perf_counter() - t0, resp


def routes(logdir):
    out = {}
    loaded = server(logdir)
    out["pca_head"], _ = timed(loaded, "embedding", layer=0, head=0)
    out["pca_other_head"], _ = timed(loaded, "embedding", layer=0, head=1)
    per_head = []
    for head in range(3):
        t0 = time.perf_counter()
        while timed(loaded, "embedding", layer=1, head=head, method="faithful")[1].status_code == 202:
            loaded.plugin._embedding.wait(600)
        per_head.append(time.perf_counter() - t0)
    out["faithful_per_head"] = per_head
    loaded.plugin._embedding.close()
    out["matrix_72_heads"], resp = timed(server(logdir), "embedding_matrix")
    out["matrix_bytes"] = len(resp.get_data())
    out["matrix_one_layer"], _ = timed(server(logdir), "embedding_matrix", layers="0")
    return out


NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
UNTIL = """async ([test, timeout]) => { const t0 = performance.now();
  while (!eval(test)) { if (performance.now() - t0 > timeout) return null; await new Promise(r => setTimeout(r, 2)); }
  return performance.now() - t0; }"""
READY = "document.body.dataset.state !== 'loading' && document.body.dataset.paintedView === 'embedding'"
ALL = "(document.querySelector('.emb-view') || {dataset: {}}).dataset.embMethod === '%s'"


def browse(logdir):
    from playwright.sync_api import sync_playwright

    from tests.browser_util import chromium_path
    from tests.conftest import start_tensorboard

    cache = tempfile.mkdtemp()
    os.environ["TB_ATTENTION_CACHE_DIR"] = cache  # cold layouts
    proc, base = start_tensorboard(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    try:
        with sync_playwright() as p:
            page = p.chromium.launch(executable_path=chromium_path()).new_page(viewport={"width": 1600, "height": 1000})
            page.goto(base + "data/plugin_entry.html?name=attention")
            page.wait_for_selector("body[data-state=ready]", timeout=300_000)
            page.evaluate("() => window.__tba.select({view: 'head', step: 100})")
            page.wait_for_selector("body[data-state=ready][data-painted-view='head']", timeout=300_000)
            t0 = time.perf_counter()
            page.evaluate("() => window.__tba.select({view: 'embedding'})")
            page.evaluate(UNTIL, [READY, 120_000])
            page.evaluate(NEXT_FRAME)
            painted = time.perf_counter() - t0
            layers = page.evaluate("document.querySelector('.emb-view').dataset.embLayersPainted")
            page.evaluate(UNTIL, [ALL % "pca", 120_000])
            all_pca = time.perf_counter() - t0
            page.evaluate(UNTIL, [ALL % "faithful", 600_000])
            return {
                "tab_click_to_painted": painted,
                "layers_at_first_paint": int(layers),
                "all_72_pca": all_pca,
                "all_72_faithful": time.perf_counter() - t0,
            }
    finally:
        proc.terminate()
        proc.wait(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--logdir", help="reuse a logdir written by an earlier run")
    args = parser.parse_args()
    logdir = pathlib.Path(args.logdir or tempfile.mkdtemp())
    if not (logdir / RUN).exists():
        write(logdir)
    results = routes(logdir)
    if not args.no_browser:
        results.update(browse(logdir))
    for name, value in results.items():
        shown = ", ".join(f"{v:.2f}" for v in value) if isinstance(value, list) else f"{value:.3f}"
        print(f"{name:24s} {shown}")


if __name__ == "__main__":
    main()
