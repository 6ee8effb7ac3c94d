"""Capture sweep: every model type in transformers' auto mappings, tiny random config, one forward each.

For each model type (in a forked subprocess with a time limit, one at a time): build a tiny model and inputs for its
modality (`sweep_build.py`), run it under its default attention implementation, then under `tb_attention.capture`
(outputs must be bit-identical), compare the captured weights with transformers' own eager `output_attentions`
(every attention field, nested tower outputs included), and recompute the weights from the stored q/k and recompute
parameters (`sweep_check.py`). Writes one JSON line per model type and `docs/capture_coverage.md`.

    python benchmarks/capture_sweep.py                      # everything (about an hour on 2 CPU cores)
    python benchmarks/capture_sweep.py --types clip,albert  # some
    python benchmarks/capture_sweep.py --resume             # continue an interrupted run
    python benchmarks/capture_sweep.py --report-only        # re-render the page from the JSON lines
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import platform
import sys
import tempfile
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import sweep_build, sweep_check  # noqa: E402

DOC = ROOT / "docs" / "capture_coverage.md"
RESULTS = pathlib.Path(tempfile.gettempdir()) / "tb_attention_capture_sweep.jsonl"  # one JSON line per model type
MEMORY_LIMIT = 8 << 30  # bytes of address space per architecture: a config that explodes fails alone


def run_one(model_type: str) -> dict:
    """Build, feed and check one model type (in the current process)."""
    import transformers

    transformers.logging.set_verbosity_error()
    import warnings

    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    row = {"model_type": model_type}
    try:
        model, inputs, notes = sweep_build.build(model_type)
    except sweep_build.CannotBuild as e:
        return {**row, "status": "cannot build", "reason": str(e), "seconds": time.perf_counter() - started}
    except sweep_build.CannotFeed as e:
        return {**row, "status": "cannot feed", "reason": str(e), "seconds": time.perf_counter() - started}
    row["class"] = notes
    row["inputs"] = {k: list(v.shape) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    try:
        row.update(sweep_check.check(model, inputs))
    except Exception as e:  # noqa: BLE001 - a crash of the checker itself is a result too
        row.update(status="sweep error", reason=sweep_check._short(e), trace=traceback.format_exc()[-800:])
    row["seconds"] = time.perf_counter() - started
    return row


def _child(model_type: str, conn) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    torch.set_num_threads(1)
    try:
        row = run_one(model_type)
    except BaseException as e:  # noqa: BLE001
        row = {"model_type": model_type, "status": "sweep error", "reason": sweep_check._short(e)}
    conn.send(json.loads(json.dumps(row, default=_jsonable)))
    conn.close()


def _jsonable(x):
    if isinstance(x, float):
        return x
    return str(x)


def run_isolated(model_type: str, timeout: float) -> dict:
    """`run_one` in a forked child (imports are inherited, so it starts in milliseconds) with a time limit."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(model_type, child))
    started = time.perf_counter()
    proc.start()
    child.close()
    row = None
    if parent.poll(timeout):
        try:
            row = parent.recv()
        except EOFError:
            row = None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    seconds = time.perf_counter() - started
    if row is None:
        status = "timeout" if seconds >= timeout else "crashed"
        reason = f"over {timeout:.0f} s" if status == "timeout" else f"exit code {proc.exitcode}"
        row = {"model_type": model_type, "status": status, "reason": reason}
    row["seconds"] = round(seconds, 2)
    return row


# -- the coverage page ----------------------------------------------------------------------------------------------

STATUSES = [
    "exact",
    "inexact",
    "missing",
    "outputs differ",
    "capture error",
    "unsupported",
    "no reference",
    "no attention",
    "cannot feed",
    "cannot build",
    "timeout",
    "crashed",
    "sweep error",
]
RAN = {"exact", "inexact", "missing", "outputs differ", "capture error"}  # built, fed, and eager has weights


def totals(rows: list[dict]) -> dict:
    ran = [r for r in rows if r["status"] in RAN]
    exact = [r for r in ran if r["status"] == "exact"]
    with_qk = [r for r in exact if r.get("qk") is not None]
    consistent = [r for r in with_qk if r["qk"] <= sweep_check.QK_EXACT]
    return {
        "model types": len(rows),
        "built, fed, with eager weights to compare": len(ran),
        "exact (<= 1e-5, bit-identical outputs)": len(exact),
        "exact, %": 100.0 * len(exact) / max(1, len(ran)),
        "exact with q/k": len(with_qk),
        "q/k reproduce the weights (<= 1e-3)": len(consistent),
        "q/k consistent, % of exact with q/k": 100.0 * len(consistent) / max(1, len(with_qk)),
        "capture errors (crashes)": sum(r["status"] == "capture error" for r in rows),
        "unsupported, with a clear error": sum(r["status"] == "unsupported" for r in rows),
        "no eager reference (eager fails or returns no weights)": sum(r["status"] == "no reference" for r in rows),
        "no attention (clear error or nothing to capture)": sum(r["status"] == "no attention" for r in rows),
        "could not be built or fed": sum(r["status"] in ("cannot build", "cannot feed") for r in rows),
        "timeouts / crashes": sum(r["status"] in ("timeout", "crashed", "sweep error") for r in rows),
    }


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "inf" if x == float("inf") else f"{x:.1e}"
    return str(x)


def render(rows: list[dict], seconds: float | None) -> str:
    import transformers

    rows = sorted(rows, key=lambda r: r["model_type"])
    t = totals(rows)
    lines = [
        "# Capture coverage (measured)",
        "",
        "Generated by `python benchmarks/capture_sweep.py` (do not edit by hand): every model type in transformers'",
        "auto mappings, a tiny random config (width 64, 4 heads, 2 layers of each layer type, windows of 4 tokens),",
        "inputs for its modality, one forward under its default attention implementation inside",
        "`tb_attention.capture`, compared with transformers' own eager `output_attentions` (every attention field of",
        "the output, nested tower outputs included). *max diff*: the largest |captured − eager| weight. *q/k*: the",
        "largest |weights recomputed from the stored q/k and recompute parameters (`LayerRecord.recompute()`) −",
        "captured weights| (float32). *exact*: bit-identical outputs and max diff ≤ 1e-5.",
        "",
        f"transformers {transformers.__version__}, torch {torch.__version__}, {platform.machine()} CPU"
        + (f"; the sweep took {seconds / 60:.0f} min" if seconds else "")
        + ".",
        "",
        "| total | count |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in t.items()]
    lines += [
        "",
        "| model type | class | method | streams | max diff | q/k | status | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        streams = ", ".join(f"{k}:{v}" for k, v in (r.get("streams") or {}).items())
        reason = str(r.get("reason", "")).replace("|", "\\|").replace("\n", " ")[:220]
        lines.append(
            f"| {r['model_type']} | {r.get('class', '')} | {r.get('method', '')} | {streams} | "
            f"{_fmt(r.get('max_diff'))} | {_fmt(r.get('qk'))} | {r['status']} | {reason} |"
        )
    return "\n".join(lines) + "\n"


def _load(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["model_type"]] = row
    return list(rows.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--types", help="comma-separated model types (default: all)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per model type")
    p.add_argument("--results", type=pathlib.Path, default=RESULTS)
    p.add_argument("--doc", type=pathlib.Path, default=DOC)
    p.add_argument("--resume", action="store_true", help="skip model types already in --results")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--took", type=float, help="with --report-only: the full run's minutes, for the page")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    types = args.types.split(",") if args.types else sweep_build.all_model_types()
    done = {r["model_type"] for r in _load(args.results)} if args.resume else set()
    started = time.perf_counter()
    if not args.report_only:
        if not args.resume and not args.types:
            args.results.write_text("")
        import transformers  # noqa: F401 - imported once here, inherited by every forked child

        run_one("bert")  # warm up torch and transformers here, so that each forked child starts warm

        with args.results.open("a") as out:
            for i, model_type in enumerate(t for t in types if t not in done):
                row = run_isolated(model_type, args.timeout)
                out.write(json.dumps(row, default=_jsonable) + "\n")
                out.flush()
                print(f"[{i + 1}] {model_type}: {row['status']} {row.get('reason', '')[:100]}", flush=True)
    elapsed = time.perf_counter() - started
    rows = _load(args.results)
    if not args.types:
        took = args.took * 60 if args.took else None
        args.doc.write_text(render(rows, elapsed if not args.report_only and not args.resume else took))
    for k, v in totals(rows).items():
        print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
