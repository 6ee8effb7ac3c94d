"""Views benchmark: tb-attention's head / model views against BertViz 1.4.1, same attention arrays, same Chromium.

6 layers x 12 heads of random softmax attention (seeded) at 64, 128 and 512 tokens. For tb-attention, a real
TensorBoard process serves the logged steps and the plugin page is opened in headless Chromium; for BertViz, the
HTML that `head_view(..., html_action="return")` / `model_view(...)` returns is opened from a file, with its three
CDN scripts (require.js 2.3.6, d3 5.7.0, jQuery) served locally from npm packages (offline it is otherwise blank).

Measured (targets from issue #5):
  head view first paint  (navigation start -> first complete paint)        <= 0.25 s at 128, <= 1 s at 512
  model view, all 72 heads (tab click -> every thumbnail painted)          <= 2 s at 512
  hover -> next frame at 512                                               <= 50 ms
  step change at 128, cached                                               <= 100 ms
  browser memory at 512 (PSS of Chromium's processes, summed)              <= 1 GB

Setup (not runtime dependencies): `pip download bertviz==1.4.1 --no-deps` and `npm pack d3@5.7.0 jquery@2.1.0
requirejs@2.3.6` into a temporary directory (network to the package registries needed once; pass --no-bertviz to
skip, and BertViz's numbers are then printed from docs as "reference, not measured in this run").

    python benchmarks/bench_views.py            # ours at 64/128/512 + BertViz at 64/128 (head) and 64 (model)
    python benchmarks/bench_views.py --full     # also BertViz model view at 128 (~25 s, several GB)
    python benchmarks/bench_views.py --no-bertviz
    python benchmarks/bench_views.py --notebook  # notebook fragments (tb_attention.notebook) against BertViz's
                                                 # head_view / model_view HTML at 64/128/512 tokens, one run

Notebook rows (issue #16): the fragment `tba.head_view(...)` / `tba.model_view(...)` returns, opened from a file with
every network request aborted, first paint = navigation start -> the view's first `ready`; bytes of the HTML.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tb_attention import AttentionWriter  # noqa: E402
from tests.browser_util import CHROMIUM_ARGS  # noqa: E402
from tests.conftest import start_tensorboard  # noqa: E402

LAYERS, HEADS = 6, 12
SIZES = (64, 128, 512)
STEPS = (0, 1, 2)
BERTVIZ_REFERENCE = {  # docs/../shared reference: bertviz-measured.md, same kind of machine (not this run)
    ("head", 64): "1.7 s",
    ("head", 128): "4.7 s",
    ("head", 256): "20 s",
    ("head", 512): "blank (never renders)",
    ("model", 64): "5.8 s",
    ("model", 128): "23 s",
    ("model", 256): "out of memory (12 GB cap)",
    ("model", 512): "blank",
    ("hover", 64): "0.42 s",
}
NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


def attention(tokens, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(LAYERS, HEADS, tokens, tokens)).astype(np.float32) * 3
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def tokens_of(n):
    return ["[CLS]"] + [f"tok{i}" for i in range(n - 2)] + ["[SEP]"]


def chromium_memory():
    """Summed PSS of every Chromium process below this one (shared pages split between the processes that map
    them, so the sum is the browser's real footprint; RSS would count shared pages once per process)."""
    total = 0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name().lower():
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
        except psutil.Error:
            pass
    return total


# -- tb-attention --------------------------------------------------------------------------------------------
def bench_ours(browser, root, n):
    logdir = root / f"ours{n}"
    with AttentionWriter(str(logdir / "run")) as w:
        for step in STEPS:
            w.add_attention("probe", attention(n, step), tokens=tokens_of(n), step=step)
    proc, base = start_tensorboard(logdir, "--load_fast=false", "--reload_interval=0", "--reload_task=blocking")
    out = {}
    try:
        url = base + "data/plugin_entry.html?name=attention"
        paints = []
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            paints.append(page.evaluate("window.__tbaFirstPaintMs") / 1000)
            page.close()
        out["head_first_paint_s"] = statistics.median(paints)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_selector("body[data-state=ready]", timeout=120_000)
        hovers = [
            page.evaluate(
                """async (i) => { const el = document.querySelector(`.token.left[data-index="${i}"]`);
                   const t = performance.now(); el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
                   await """
                + NEXT_FRAME
                + """; return performance.now() - t; }""",
                i,
            )
            for i in (3, 7, 11, 15, 19)
        ]
        out["hover_ms"] = statistics.median(hovers)
        # Step change once cached: visit every step, then time moves between them (to ready + next frame).
        select = (
            """async (step) => { const t = performance.now(); window.__tba.select({step});
            while (!(document.body.dataset.state === 'ready' && document.body.dataset.paintedStep === String(step)))
              await new Promise(r => setTimeout(r, 1));
            await """
            + NEXT_FRAME
            + """; return performance.now() - t; }"""
        )
        for step in STEPS:
            page.evaluate(select, step)
        out["step_change_ms"] = statistics.median([page.evaluate(select, s) for s in (0, 1, 2, 1, 0, 2)])
        model = (
            """async () => { const t = performance.now(); window.__tba.select({view: 'model'});
            while (!(document.body.dataset.state === 'ready' && document.body.dataset.paintedView === 'model'))
              await new Promise(r => setTimeout(r, 1));
            await """
            + NEXT_FRAME
            + """; return performance.now() - t; }"""
        )
        out["model_view_s"] = page.evaluate(model) / 1000
        out["browser_rss_gb"] = chromium_memory() / 1e9
        page.close()
    finally:
        proc.kill()
        proc.wait()
    return out


# -- BertViz 1.4.1 -------------------------------------------------------------------------------------------
def setup_bertviz(tmp):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "bertviz==1.4.1", "--no-deps", "-q", "-d", str(tmp)], check=True
    )
    with zipfile.ZipFile(next(tmp.glob("bertviz-1.4.1-*.whl"))) as z:
        z.extractall(tmp / "site")
    subprocess.run(
        ["npm", "pack", "d3@5.7.0", "jquery@2.1.0", "requirejs@2.3.6"], cwd=tmp, check=True, capture_output=True
    )
    js = tmp / "js"
    js.mkdir()
    for tgz, member, name in (
        ("d3-5.7.0.tgz", "package/dist/d3.min.js", "d3.min.js"),
        ("jquery-2.1.0.tgz", "package/dist/jquery.min.js", "jquery.min.js"),
        ("requirejs-2.3.6.tgz", "package/require.js", "require.min.js"),
    ):
        with tarfile.open(tmp / tgz) as t:
            (js / name).write_bytes(t.extractfile(member).read())
    sys.path.insert(0, str(tmp / "site"))
    import bertviz

    return bertviz


def bertviz_html(bertviz, kind, attn, tokens, out):
    import torch

    layers = [torch.from_numpy(a)[None] for a in attn]
    fn = bertviz.head_view if kind == "head" else bertviz.model_view
    t0 = time.perf_counter()
    html = fn(layers, tokens, html_action="return").data
    build_s = time.perf_counter() - t0
    html = (
        html.replace("https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js", "js/require.min.js")
        .replace("https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min", "js/d3.min")
        .replace("https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min", "js/jquery.min")
    )
    out.write_text(html)
    return build_s, len(html)


# Records when the first SVG line exists (d3 builds them all in one task), then the next painted frame.
BV_INIT = """window.__bvPainted = null; const __t = setInterval(() => { if (document.querySelector('svg line')) {
  clearInterval(__t); requestAnimationFrame(() => setTimeout(() => { window.__bvPainted = performance.now(); }, 0)); }
}, 20);"""


def bench_bertviz(browser, bertviz, tmp, kind, n, timeout_s=120):
    path = tmp / f"bv_{kind}_{n}.html"
    build_s, size = bertviz_html(bertviz, kind, attention(n, 0), tokens_of(n), path)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script(BV_INIT)
    res = {"build_s": build_s, "html_mb": size / 1e6}
    try:
        page.goto(path.as_uri(), timeout=timeout_s * 1000)
        page.wait_for_function("window.__bvPainted !== null", timeout=timeout_s * 1000, polling=200)
        res["paint_s"] = page.evaluate("window.__bvPainted") / 1000
        res["rss_gb"] = chromium_memory() / 1e9
        if kind == "head":
            res["hover_ms"] = page.evaluate(
                """async () => { const el = document.querySelectorAll('#left text')[3];
                   const t = performance.now(); el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
                   await """
                + NEXT_FRAME
                + """; return performance.now() - t; }"""
            )
    except Exception as e:  # a page that never renders is a result, not a crash
        res["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    finally:
        page.close()
        path.unlink()
    return res


# -- notebook fragments (tb_attention.notebook) --------------------------------------------------------------
def bench_notebook(browser, tmp, kind, n):
    from tb_attention import notebook as tba

    layers = list(attention(n, 0)[:, None])  # BertViz's input: one [1, heads, n, n] array per layer
    t0 = time.perf_counter()
    view = (tba.head_view if kind == "head" else tba.model_view)(layers, tokens_of(n))
    res = {"build_s": time.perf_counter() - t0, "html_mb": view.nbytes / 1e6, "notes": view.notes}
    path = view.save(tmp / f"nb_{kind}_{n}.html")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
    try:
        page.goto(Path(path).as_uri())
        page.wait_for_function(
            "() => { const h = document.querySelector('.tb-attention'); const b = h && h.shadowRoot &&"
            " h.shadowRoot.querySelector('body'); return b && b.dataset.state === 'ready'; }",
            timeout=120_000,
        )
        res["paint_s"] = page.evaluate("document.querySelector('.tb-attention').__tbaFirstPaintMs") / 1000
        if kind == "head":
            res["hover_ms"] = page.evaluate(
                """async () => { const r = document.querySelector('.tb-attention').shadowRoot;
                   const el = r.querySelector('.token.left[data-index="3"]');
                   const t = performance.now(); el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
                   await """
                + NEXT_FRAME
                + """; return performance.now() - t; }"""
            )
    finally:
        page.close()
    return res


def notebook_table(nb, theirs):
    print("\nNotebook fragments: 6 layers x 12 heads of random softmax attention (compresses worse than a real")
    print("model's), the same arrays and Chromium for both; first paint from navigation start, network aborted.\n")
    print("| view | tokens | tb-attention fragment | first paint | BertViz 1.4.1 HTML | first paint |")
    print("|---|---|---|---|---|---|")
    for (kind, n), r in sorted(nb.items()):
        b = theirs.get((kind, n))
        if b is None:
            ref = BERTVIZ_REFERENCE.get((kind, n))
            b_html, b_paint = "–", f"{ref} (reference)" if ref else "–"
        else:
            b_html = f"{b['html_mb']:.1f} MB"
            b_paint = f"did not render ({b['error']})" if "error" in b else fmt(b.get("paint_s"), "s")
        lod = " (top keys kept)" if r["notes"] else ""
        print(f"| {kind} | {n} | {r['html_mb']:.2f} MB{lod} | {fmt(r['paint_s'], 's')} | {b_html} | {b_paint} |")


def fmt(v, unit):
    return "–" if v is None else (f"{v * 1000:.0f} ms" if unit == "s" and v < 1 else f"{v:.2f} {unit}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-bertviz", action="store_true")
    ap.add_argument("--full", action="store_true", help="also BertViz's model view at 128 tokens")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--notebook", action="store_true", help="only the notebook fragments against BertViz's HTML")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench_views_"))
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    ours, theirs = {}, {}
    if args.notebook:
        return main_notebook(args, sizes, tmp, chromium)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for n in sizes:
            ours[n] = bench_ours(browser, tmp, n)
            print(f"tb-attention {n} tokens: {json.dumps(ours[n])}", flush=True)
        browser.close()
        if not args.no_bertviz:
            bertviz = setup_bertviz(tmp)
            runs = [("head", 64), ("head", 128), ("model", 64)] + ([("model", 128)] if args.full else [])
            for kind, n in runs:
                # A fresh browser per page: a BertViz page can take gigabytes that a closed tab does not return.
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                theirs[kind, n] = bench_bertviz(browser, bertviz, tmp, kind, n)
                browser.close()
                print(f"BertViz {kind} {n} tokens: {json.dumps(theirs[kind, n])}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    def bv(kind, n, key="paint_s"):
        r = theirs.get((kind, n))
        if r is None:
            ref = BERTVIZ_REFERENCE.get((kind, n))
            return f"{ref} (reference, not measured in this run)" if ref else "–"
        if "error" in r:
            return f"did not render ({r['error']})"
        return fmt(r.get(key), "s") if key != "hover_ms" else f"{r[key]:.0f} ms"

    print("\n6 layers x 12 heads, headless Chromium, this machine; BertViz 1.4.1 on the same attention arrays.\n")
    print("| measure | target | tb-attention | BertViz 1.4.1 |")
    print("|---|---|---|---|")
    o = lambda n, k: ours.get(n, {}).get(k)  # noqa: E731
    print(f"| head view first paint, 64 tokens | – | {fmt(o(64, 'head_first_paint_s'), 's')} | {bv('head', 64)} |")
    print(
        f"| head view first paint, 128 tokens | ≤ 0.25 s | {fmt(o(128, 'head_first_paint_s'), 's')} | {bv('head', 128)} |"
    )
    print(
        f"| head view first paint, 512 tokens | ≤ 1 s | {fmt(o(512, 'head_first_paint_s'), 's')} | {bv('head', 512)} |"
    )
    print(f"| model view (72 heads), 64 tokens | – | {fmt(o(64, 'model_view_s'), 's')} | {bv('model', 64)} |")
    print(f"| model view (72 heads), 128 tokens | – | {fmt(o(128, 'model_view_s'), 's')} | {bv('model', 128)} |")
    print(f"| model view (72 heads), 512 tokens | ≤ 2 s | {fmt(o(512, 'model_view_s'), 's')} | {bv('model', 512)} |")
    hov64 = o(64, "hover_ms")
    bv_hover = (
        bv("head", 64, "hover_ms") if ("head", 64) in theirs else f"{BERTVIZ_REFERENCE[('hover', 64)]} (reference)"
    )
    print(f"| hover to next frame, 64 tokens | – | {'–' if hov64 is None else f'{hov64:.0f} ms'} | {bv_hover} |")
    hov = o(512, "hover_ms")
    print(
        f"| hover to next frame, 512 tokens | ≤ 50 ms | {'–' if hov is None else f'{hov:.0f} ms'} | {bv('head', 512)} |"
    )
    sc = o(128, "step_change_ms")
    print(f"| step change, 128 tokens, cached | ≤ 100 ms | {'–' if sc is None else f'{sc:.0f} ms'} | no steps |")
    mem = o(512, "browser_rss_gb")
    print(f"| browser memory (PSS), 512 tokens | ≤ 1 GB | {fmt(mem, 'GB')} | {bv('head', 512)} |")
    for (kind, n), r in sorted(theirs.items()):
        if "rss_gb" in r:
            print(
                f"\nBertViz {kind} view {n} tokens: HTML {r['html_mb']:.0f} MB built in {r['build_s']:.1f} s, "
                f"browser memory (PSS) {r['rss_gb']:.2f} GB"
            )


def main_notebook(args, sizes, tmp, chromium):
    nb, theirs = {}, {}
    with sync_playwright() as p:
        for kind in ("head", "model"):
            for n in sizes:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                nb[kind, n] = bench_notebook(browser, tmp, kind, n)
                browser.close()
                print(f"notebook {kind} {n} tokens: {json.dumps(nb[kind, n])}", flush=True)
        if not args.no_bertviz:
            bertviz = setup_bertviz(tmp)
            # BertViz at 512 tokens builds an 869 MB page that never renders, and its model view at 128 takes
            # ~25 s and several GB: measured with --full only, else its reference numbers are printed.
            limits = {"head": 512 if args.full else 128, "model": 128 if args.full else 64}
            for kind in ("head", "model"):
                for n in [n for n in sizes if n <= limits[kind]]:
                    browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                    theirs[kind, n] = bench_bertviz(browser, bertviz, tmp, kind, n)
                    browser.close()
                    print(f"BertViz {kind} {n} tokens: {json.dumps(theirs[kind, n])}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    notebook_table(nb, theirs)


if __name__ == "__main__":
    main()
