"""Train a tiny GPT-style transformer to continue repeated random sequences, logging its attention.

The task can only be solved by an induction circuit (a previous-token head in layer 0 feeding a head in layer 1
that attends to the token after the earlier occurrence of the current token), so the attention pattern visibly
changes during training: diffuse at first, then a sharp off-diagonal stripe once the loss drops.

    python examples/train_copy.py --logdir runs/copy [--steps 1500] [--threads 1]
"""

import argparse
import math
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from tb_attention import AttentionWriter

WORDS = "red blue green gold pink gray cyan lime navy teal plum rose sand jade ruby mint".split()
BOS = len(WORDS)


class Attention(nn.Module):
    def __init__(self, d_model, heads):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(causal, float("-inf")).softmax(-1)
        y = (weights @ v).transpose(1, 2).reshape(b, t, -1)
        return self.out(y), (weights, q, k)


class TinyGPT(nn.Module):
    def __init__(self, vocab, max_len, d_model=64, heads=4, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Attention(d_model, heads) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(d_model), nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
            )
            for _ in range(layers)
        )
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids):
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        seen = []
        for attn, norm, mlp in zip(self.blocks, self.norms, self.mlps):
            y, captured = attn(norm(x))
            x = x + y
            x = x + mlp(x)
            seen.append(captured)
        return self.head(x), seen


def batch(size, half, generator):
    """BOS + a random sequence + the same sequence again."""
    seq = torch.randint(0, len(WORDS), (size, half), generator=generator)
    return torch.cat([torch.full((size, 1), BOS), seq, seq], dim=1)


def random_length_batch(size, max_half, generator):
    # A varying repeat distance rules out a purely positional solution: the model must match content.
    half = int(torch.randint(4, max_half + 1, (1,), generator=generator))
    return batch(size, half, generator), half


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/copy")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--log-every", type=int, default=20, help="log the full attention every N steps")
    parser.add_argument("--metrics-every", type=int, default=1, help="log per-head metrics every N steps (0: off)")
    parser.add_argument("--half", type=int, default=12, help="length of the repeated sequence")
    parser.add_argument("--batch", type=int, default=64, help="sequences per training step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: this model is so small that more threads mostly wait on each other)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    # Measured on a 2-core machine: 100 steps take 5 s on one thread and 61-65 s with torch's default of two,
    # which spend each tiny matmul synchronising (and fight any other process for the cores).
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = TinyGPT(len(WORDS) + 1, 2 * args.half + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    probe = batch(1, args.half, torch.Generator().manual_seed(12345))
    tokens = ["<bos>"] + [WORDS[i] for i in probe[0, 1:].tolist()]

    started = time.time()
    progress = tqdm(total=args.steps + 1, desc="training", unit="step", disable=args.quiet, mininterval=0.5)
    with SummaryWriter(args.logdir) as scalars, AttentionWriter(scalars) as attention, progress:
        for step in range(args.steps + 1):
            ids, half = random_length_batch(args.batch, args.half, generator)
            logits, _ = model(ids[:, :-1])
            # Only the second copy is predictable: score the model there.
            loss = F.cross_entropy(logits[:, half + 1 :].reshape(-1, logits.shape[-1]), ids[:, half + 2 :].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scalars.add_scalar("train/loss", loss.item(), step)
            full = step % args.log_every == 0
            if full or (args.metrics_every and step % args.metrics_every == 0):
                model.eval()
                with torch.no_grad():
                    _, seen = model(probe)
                model.train()
                # Cheap per-head metrics (entropy, previous-token, induction score, ...; docs/metrics.md) every
                # step; computed on the writer's background thread.
                attention.add_metrics("probe/repeat", [w[0] for w, _, _ in seen], step=step, tokens=tokens)
            if full:
                attention.add_attention(
                    "probe/repeat",
                    [w[0] for w, _, _ in seen],
                    tokens=tokens,
                    step=step,
                    queries=[q[0] for _, q, _ in seen],
                    keys=[k[0] for _, _, k in seen],
                )
                progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            progress.update()
    print(f"trained {args.steps} steps in {time.time() - started:.1f} s, final loss {loss.item():.3f}", flush=True)
    return loss.item()


if __name__ == "__main__":
    main()
