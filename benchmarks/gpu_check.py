"""GPU check (issue #12, section 4): capture a Llama-shaped model in bf16 on CUDA at 4,096 tokens, under `sdpa` and
(if installed) `flash_attention_2`, and print what a reader of the closing note needs:

- verify(): the captured weights against eager attention on the same input (max |Δ|, per implementation);
- capture overhead: forward time with and without the capture block (median of a few runs, CUDA-synchronised);
- GPU → CPU traffic: bytes the capture copied to the host and how long the copy took;
- q/k-only mode (`capture(..., weights=False)`), the way flash attention is used: the weights never exist, only q/k
  and sampled check rows are copied, then logged with `store="qk"` and the stored rows rebuilt and compared.

It needs a CUDA machine and finishes in well under 5 minutes on one modern GPU (the model is 2 layers of a 7B shape:
hidden 4,096, 32 heads, 8 key heads, d_head 128, RoPE; random weights). Never part of the test suite.

    python benchmarks/gpu_check.py               # prints a table; exit code 1 if a check fails
    python benchmarks/gpu_check.py --tokens 2048 --layers 2
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tb_attention  # noqa: E402
from tb_attention import AttentionWriter  # noqa: E402


def llama(layers, implementation, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=4096,
        intermediate_size=2048,  # small MLP: the attention shape is what is measured
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=32000,
        max_position_embeddings=32768,
    )
    model = LlamaForCausalLM._from_config(cfg, attn_implementation=implementation, dtype=dtype)
    return model.to(DEVICE).eval()


DEVICE = "cuda"


def sync():
    if DEVICE == "cuda":
        sync()


def timed(fn, repeats=3):
    out = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def host_bytes(cap):
    total = 0
    for recs in cap.streams.values():
        for r in recs:
            for t in (r.weights, r.queries, r.keys):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
    return total


def check_implementation(name, args, ids):
    model = llama(args.layers, name, torch.bfloat16)
    with torch.no_grad():
        plain = timed(lambda: model(ids))

        def run():
            with tb_attention.capture(model) as cap:
                model(ids)
            return cap

        cap = run()
        captured = timed(run)
        report = cap.verify(atol=args.atol)
    row = {
        "implementation": name,
        "forward_s": plain,
        "with_capture_s": captured,
        "overhead": captured / plain,
        "host_MB": host_bytes(cap) / 1e6,
        "verify_max_diff": report.max_diff,
        "verify_ok": report.ok,
    }
    model = cap = None  # free the GPU memory before the next implementation
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return row


def check_qk_only(name, args, ids, tmp):
    """Weights never materialised: q/k + check rows to the host, stored as "qk", rows rebuilt from the event file."""
    model = llama(args.layers, name, torch.bfloat16)
    with torch.no_grad():
        sync()
        t = time.perf_counter()
        with tb_attention.capture(model, weights=False) as cap:
            model(ids)
        sync()
        capture_s = time.perf_counter() - t
    tokens = [f"t{i}" for i in range(ids.shape[1])]
    t = time.perf_counter()
    with AttentionWriter(tmp) as w:
        w.add_capture("probe/gpu", cap, step=0, tokens=tokens, store="qk")
        call_s = time.perf_counter() - t
    total_s = time.perf_counter() - t
    files = sorted(Path(tmp).rglob("events.out.tfevents.*"))
    size = sum(p.stat().st_size for p in files)
    checks = stored_checks(files)
    return {
        "implementation": f"{name}, weights=False",
        "capture_s": capture_s,
        "host_MB": host_bytes(cap) / 1e6,
        "add_capture_call_s": call_s,
        "written_s": total_s,
        "event_file_MB": size / 1e6,
        "storage": ",".join(sorted({kind for kind, _, _ in checks})),
        "checked_rows_per_head": max((rows for _, rows, _ in checks), default=0),
        "max_recompute_error": max((err for _, _, err in checks), default=float("nan")),
    }


def stored_checks(files):
    """Per stored layer: (storage, rows the writer checked per head, the largest error it found as a fraction of the
    row maximum), read back from the event files as a reader would."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from tb_attention.format import codec, manifest

    out = []
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                blobs = list(value.tensor.string_val)
                if not blobs:
                    continue
                m = manifest.decode(blobs[0])
                for layer in range(m.num_layers):
                    if m.weights_stored(layer):
                        out.append(("weights", 0, 0.0))
                        continue
                    meta, _ = codec.decode_recompute(blobs[1 + layer], m.num_heads, m.query_len, m.key_len)
                    out.append(("qk", int(meta.get("checked_rows", 0)), float(meta.get("max_error", 0.0))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--atol", type=float, default=2e-2, help="bf16 logits: eager and sdpa round differently")
    ap.add_argument("--cpu-smoke", action="store_true", help="run the script's code paths on the CPU, tiny sizes")
    args = ap.parse_args()
    global DEVICE
    if args.cpu_smoke:
        DEVICE = "cpu"
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing measured")
        return 2
    name = "cpu (smoke run: nothing here is a GPU figure)" if DEVICE == "cpu" else torch.cuda.get_device_name()
    print(f"device: {name}, torch {torch.__version__}")
    ids = torch.randint(0, 32000, (1, args.tokens), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    implementations = ["sdpa"]
    try:
        import flash_attn  # noqa: F401

        implementations.append("flash_attention_2")
    except ImportError:
        print("flash_attn is not installed: flash_attention_2 not checked")
    failed = False
    for name in implementations:
        row = check_implementation(name, args, ids)
        print(" | ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))
        failed |= not row["verify_ok"]
        with tempfile.TemporaryDirectory() as tmp:
            row = check_qk_only(name, args, ids, tmp)
        print(" | ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))
        failed |= row["storage"] != "qk" or not row["max_recompute_error"] <= 0.01
    if DEVICE == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.2f} GB; numpy {np.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
