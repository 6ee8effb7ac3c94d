"""The peer attention visualisers measured in headless Chromium, offline, on the attention arrays we are given.

BertViz 1.4.1 (head view, `head_view(..., html_action="return")`, its CDN scripts served from npm packages as in
bench_views.py), CircuitsVis 1.43.3 (`circuitsvis.attention.attention_heads(...).local_src`, the page that inlines
its bundle) and Inspectus 0.2.0 (its notebook-only `inspectus.attention` rebuilt without IPython, below). Each gets
ONE layer ([1, heads, n, n] of the array passed in; `"layers": 1` in every result). Wheels are fetched with
`pip download --no-deps` and unzipped onto sys.path: nothing is installed. Every request that is not a local file
is aborted in Chromium, so a page that needs a CDN shows nothing, as it would offline.

First paint = navigation start -> the next frame after the page holds the peer's drawing, checked in the page:
  bertviz      an SVG <line> exists (d3 draws all 12·n² lines of the layer in one task)
  circuitsvis  every <canvas> on the page (head thumbnails and the selected head) has non-transparent pixels
  inspectus    the attention-matrix SVG holds n² <rect> cells
A page that shows nothing within `timeout_s`, whose renderer crashes, or whose renderer grows past `memory_cap_gb`
(then killed, so one page cannot take the machine) is closed and recorded, never raised.

    python benchmarks/peers.py                # largest size each peer renders, 128..2048 tokens, 60 s per page
    python benchmarks/peers.py --timeout 30 --peers inspectus
"""

import importlib
import importlib.metadata
import json
import os
import pkgutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from uuid import uuid4

import numpy as np

VERSIONS = {"bertviz": "1.4.1", "circuitsvis": "1.43.3", "inspectus": "0.2.0"}
INSPECTUS_CHARTS = ["attention_matrix", "query_token_heatmap", "key_token_heatmap", "dimension_heatmap"]  # its default
MEMORY_CAP_GB = 8.0
SLICE_MS = 500  # the page is polled in slices, so a hung renderer (one long task) cannot block the timeout checks

# Per peer, a JS expression that is true once the page holds the visualisation; N is the token count.
PAINTED = {
    "bertviz": "document.querySelector('svg line') !== null",
    "circuitsvis": """(() => { const cs = [...document.querySelectorAll('canvas')];
      if (!cs.length) return false;
      return cs.every(c => { if (!c.width || !c.height) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
        return false; }); })()""",
    "inspectus": "[...document.querySelectorAll('svg')].some(s => s.querySelectorAll('rect').length >= N * N)",
}
EVIDENCE = {
    "bertviz": "document.querySelectorAll('svg line').length + ' svg lines'",
    "circuitsvis": "document.querySelectorAll('canvas').length + ' canvases painted'",
    "inspectus": "Math.max(...[...document.querySelectorAll('svg')].map(s => s.querySelectorAll('rect').length))"
    " + ' rects in the matrix svg'",
}
WATCH = """(() => { if (window !== window.top) return; window.__peerPainted = null;
  const t = setInterval(() => { let ok = false; try { ok = CHECK; } catch (e) {}
    if (ok) { clearInterval(t);
      requestAnimationFrame(() => setTimeout(() => { window.__peerPainted = performance.now(); }, 0)); } }, 50);
})();"""


def _bench_views():
    """bench_views.py (same folder) for its BertViz setup and HTML, imported on first use only."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("bench_views")


def _unpack_wheel(tmp: Path, name: str) -> Path:
    """`pip download name==version --no-deps` into tmp, unzipped into tmp/site-name, which goes on sys.path."""
    site = tmp / f"site-{name}"
    if not site.exists():
        wheels = tmp / "wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"{name}=={VERSIONS[name]}",
                "--no-deps",
                "-q",
                "-d",
                str(wheels),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        with zipfile.ZipFile(next(wheels.glob(f"{name}-{VERSIONS[name]}-*.whl"))) as z:
            z.extractall(site)
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    return site


def _setup_bertviz(tmp: Path):
    home = tmp / "bertviz"  # bench_views.setup_bertviz downloads the wheel and npm packages here, pages go here too
    if (home / "js").exists():
        sys.path.insert(0, str(home / "site"))
        return importlib.import_module("bertviz")
    home.mkdir(parents=True, exist_ok=True)
    return _bench_views().setup_bertviz(home)


def _setup_circuitsvis(tmp: Path):
    _unpack_wheel(tmp, "circuitsvis")
    try:
        import importlib_metadata  # noqa: F401  (circuitsvis/__init__ reads its version with the backport)
    except ImportError:  # the stdlib module answers the same question; only this process's sys.modules changes
        sys.modules["importlib_metadata"] = importlib.metadata
    importlib.import_module("circuitsvis.attention")
    return importlib.import_module("circuitsvis")


def _setup_inspectus(tmp: Path):
    _unpack_wheel(tmp, "inspectus")
    importlib.import_module("inspectus.attention_viz")
    return importlib.import_module("inspectus")


def setup(tmp: Path) -> dict:
    """Fetches and imports the peers; returns {name: module} for those that could be set up, printing why not."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    ready = {}
    for name, fn in (("bertviz", _setup_bertviz), ("circuitsvis", _setup_circuitsvis), ("inspectus", _setup_inspectus)):
        try:
            ready[name] = fn(tmp)
        except Exception as e:  # noqa: BLE001  (a peer that cannot be set up is reported, the others still run)
            err = getattr(e, "stderr", None)  # pip's own message, when it was pip that failed
            lines = (err.decode(errors="replace") if isinstance(err, bytes) else str(e)).strip().splitlines()
            detail = lines[-1] if err and lines else (lines[0] if lines else "")
            print(f"peers: {name} {VERSIONS[name]} not set up: {type(e).__name__}: {detail}", flush=True)
    return ready


# -- one page per peer -------------------------------------------------------------------------------------
def _page(body: str) -> str:
    return f'<!doctype html>\n<html><head><meta charset="utf-8"></head><body>\n{body}\n</body></html>\n'


def _build_bertviz(tmp, attention, tokens):
    out = tmp / "bertviz" / f"bertviz_{len(tokens)}_{uuid4().hex[:8]}.html"  # beside js/, which the page loads
    bertviz = importlib.import_module("bertviz")
    build_s, _ = _bench_views().bertviz_html(bertviz, "head", attention[:1], tokens, out)
    return out, build_s


def _build_circuitsvis(tmp, attention, tokens):
    cv = importlib.import_module("circuitsvis.attention")
    t0 = time.perf_counter()
    html = _page(cv.attention_heads(attention[0], tokens).local_src)  # [heads, dest, src]; bundle inlined
    build_s = time.perf_counter() - t0
    out = tmp / f"circuitsvis_{len(tokens)}_{uuid4().hex[:8]}.html"
    out.write_text(html, encoding="utf-8")
    return out, build_s


def _build_inspectus(tmp, attention, tokens):
    """What `inspectus.attention(attn, tokens)` displays in a notebook (attention_viz.attention_chart with
    utils.init_inline_viz: its charts.js and charts.css inlined, then `chartsEmbed(id, data, colors, theme)`), as one
    page: the same calls and strings, with IPython's display() replaced by concatenation."""
    viz = importlib.import_module("inspectus.attention_viz")
    utils = importlib.import_module("inspectus.utils")
    t0 = time.perf_counter()
    attn, dimensions = viz.parse_attn(attention[:1])
    src = [str(t) for t in tokens]
    data = json.dumps(
        {
            "attention": [
                {"values": utils.convert_b64(a.matrix), "info": a.info, "shape": a.matrix.shape} for a in attn
            ],
            "src_tokens": src,
            "tgt_tokens": src,
            "chart_types": INSPECTUS_CHARTS,
            "dimensions": dimensions,
        }
    )
    js = pkgutil.get_data("inspectus", "static/js/charts.js").decode("utf-8")
    css = pkgutil.get_data("inspectus", "static/css/charts.css").decode("utf-8")
    elem_id = "id_" + uuid4().hex
    color = viz.parse_colors(None)
    html = _page(
        f'<script type="text/javascript">{js}</script><style>{css}</style>'
        f'<div id="{elem_id}"></div>'
        f"<script>window.chartsEmbed('{elem_id}',{data}, {color}, 'auto')</script>"
    )
    build_s = time.perf_counter() - t0
    out = tmp / f"inspectus_{len(tokens)}_{uuid4().hex[:8]}.html"
    out.write_text(html, encoding="utf-8")
    return out, build_s


BUILD = {"bertviz": _build_bertviz, "circuitsvis": _build_circuitsvis, "inspectus": _build_inspectus}


def _renderers():
    """Chromium renderer processes below this one (playwright's driver starts the browser as our grandchild)."""
    import psutil

    procs = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" in " ".join(p.cmdline()):
                procs.append(p)
        except psutil.Error:
            pass
    return procs


def _rss(p):
    try:
        return p.memory_info().rss
    except Exception:  # noqa: BLE001  (gone)
        return 0


def measure(
    browser,
    tmp: Path,
    peer: str,
    attention: np.ndarray,
    tokens: list,
    timeout_s: float = 60,
    *,
    memory_cap_gb: float = MEMORY_CAP_GB,
) -> dict:
    """Builds `peer`'s page for attention [layers, heads, n, n] (first layer only) and opens it offline.

    `browser`: a playwright Browser, or a callable returning a fresh one (launched and closed for this page).
    A renderer past `memory_cap_gb` (RSS) is killed and the outcome says so. Besides the keys in the brief, a row
    has `renderer_peak_gb` (RSS sampled while waiting), `evidence` (what the page held when it counted as
    painted), `page_error` (the first uncaught error, if any) and `load_1min` (the machine's load average: timings
    on a shared 2-core machine stretch with it)."""
    cap = memory_cap_gb * 2**30
    tmp = Path(tmp)
    n = len(tokens)
    res = {"peer": peer, "tokens": n, "layers": 1, "html_mb": None, "build_s": None, "first_paint_s": None}
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim != 4 or attention.shape[2:] != (n, n):
        return {**res, "outcome": f"error: attention {attention.shape} is not [layers, heads, {n}, {n}]"}
    try:
        path, build_s = BUILD[peer](tmp, attention, list(tokens))
    except Exception as e:  # noqa: BLE001
        return {**res, "outcome": f"error: building the page: {type(e).__name__}: {str(e)[:200]}"}
    res["build_s"] = round(build_s, 3)
    res["html_mb"] = round(path.stat().st_size / 1e6, 2)
    own = callable(browser)
    b = browser() if own else browser
    page, crashed, errors = None, [], []
    try:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        page.on("crash", lambda _: crashed.append(True))
        page.on("pageerror", lambda e: errors.append(str(e).splitlines()[0][:160]))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.add_init_script(WATCH.replace("CHECK", PAINTED[peer].replace("N * N", f"{n} * {n}")))
        t0 = time.monotonic()
        page.goto(path.as_uri(), wait_until="commit", timeout=timeout_s * 1000)
        peak, outcome = 0, None
        while outcome is None:
            try:
                page.wait_for_function("window.__peerPainted !== null", timeout=SLICE_MS, polling=100)
                res["first_paint_s"] = round(page.evaluate("window.__peerPainted") / 1000, 3)
                res["evidence"] = page.evaluate(EVIDENCE[peer].replace("N * N", f"{n} * {n}"))
                outcome = "renders"
            except Exception as e:  # noqa: BLE001  (a timeout slice, a crash or a closed target)
                sizes = {p: _rss(p) for p in _renderers()}  # one page at a time: the biggest renderer is this one
                rss = max(sizes.values(), default=0)
                peak = max(peak, rss)
                if crashed or "crash" in str(e).lower():
                    outcome = "crashed"
                elif rss > cap:
                    for p in [p for p, size in sizes.items() if size > cap]:
                        p.kill()
                    outcome = f"error: renderer over {cap / 2**30:.0f} GiB of memory, killed"
                elif time.monotonic() - t0 > timeout_s:
                    outcome = f"nothing within {timeout_s:g} s"
                elif "Timeout" not in type(e).__name__:
                    outcome = f"error: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        res["renderer_peak_gb"] = round(max([peak] + [_rss(p) for p in _renderers()]) / 2**30, 2)
        if outcome == "renders" and res["first_paint_s"] > timeout_s:  # painted between two checks, but too late
            outcome, res["first_paint_s"] = f"nothing within {timeout_s:g} s", None
        res["outcome"] = outcome
    except Exception as e:  # noqa: BLE001
        res["outcome"] = "crashed" if crashed else f"error: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        if errors:
            res["page_error"] = errors[0]
        res["load_1min"] = round(os.getloadavg()[0], 1)
        try:
            if page is not None:
                page.context.close()  # new_page made a context of its own
        except Exception:  # noqa: BLE001
            pass
        if own:
            b.close()
        path.unlink(missing_ok=True)
    return res


def largest_rendering(
    browser,
    tmp: Path,
    peer: str,
    make_attention,
    sizes=(128, 256, 512, 1024, 2048),
    timeout_s=60,
    *,
    memory_cap_gb: float = MEMORY_CAP_GB,
    report=None,
) -> list:
    """measure() at increasing sizes (make_attention(n) -> (attention, tokens)), stopping after the first size
    that does not render: the last "renders" row is the largest size this peer can show, the one after it says
    what happens beyond. `report(row)`, if given, is called with each row as it is measured."""
    rows = []
    for n in sizes:
        attention, tokens = make_attention(n)
        row = measure(browser, tmp, peer, attention, tokens, timeout_s, memory_cap_gb=memory_cap_gb)
        del attention
        rows.append(row)
        if report:
            report(row)
        if row["outcome"] != "renders":
            break
    return rows


def _random_attention(n, heads=12, seed=0):
    rng = np.random.default_rng(seed + n)
    logits = rng.normal(0, 2, (1, heads, n, n)).astype(np.float32)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True), [f"w{i}" for i in range(n)]  # plain tokens: Inspectus throws on '##'


def main():
    import argparse
    import shutil
    import tempfile

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.browser_util import CHROMIUM_ARGS

    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default="bertviz,circuitsvis,inspectus")
    ap.add_argument("--sizes", default="128,256,512,1024,2048")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--memory-cap-gb", type=float, default=MEMORY_CAP_GB)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="peers-"))
    t0 = time.perf_counter()
    try:
        kit = setup(tmp)
        with sync_playwright() as p:

            def launch():  # a fresh Chromium per page: a big page's memory is not all returned when its tab closes
                return p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)

            for peer in [x for x in args.peers.split(",") if x in kit]:
                largest_rendering(
                    launch,
                    tmp,
                    peer,
                    _random_attention,
                    sizes=[int(s) for s in args.sizes.split(",")],
                    timeout_s=args.timeout,
                    memory_cap_gb=args.memory_cap_gb,
                    report=lambda row: print(json.dumps(row), flush=True),
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
