"""The repeated-random-token probe of the induction score (docs/metrics.md)."""

import re

import numpy as np

_UNUSED = re.compile(r"^[\[<]unused\d*[\]>]$")  # placeholder vocabulary entries


def repeated_random_tokens(tokenizer_or_vocab, length=20, *, seed=0, bos=True):
    """A repeated-random-token probe for the induction score: (input_ids, tokens).

    ``tokenizer_or_vocab``: a Hugging Face tokenizer (ids drawn from its vocabulary, special tokens excluded, BOS/CLS
    prepended when it has one and ``bos``) or a vocabulary size (ids 0..n-1, no BOS). The random half has no
    repeated token, so each second-copy token has exactly one induction target.
    """
    rng = np.random.default_rng(seed)
    prefix = []
    if isinstance(tokenizer_or_vocab, (int, np.integer)):
        vocab = np.arange(int(tokenizer_or_vocab))
        convert = None
    else:
        tok = tokenizer_or_vocab
        special = set(getattr(tok, "all_special_ids", []) or [])
        convert = tok.convert_ids_to_tokens
        names = convert(list(range(len(tok))))
        # Placeholders such as BERT's [unused17] are not special ids but were never trained: leave them out too.
        vocab = np.array([i for i, name in enumerate(names) if i not in special and not _UNUSED.match(str(name))])
        start = getattr(tok, "bos_token_id", None)
        if start is None:
            start = getattr(tok, "cls_token_id", None)
        if bos and start is not None:
            prefix = [int(start)]
    if length > len(vocab):
        raise ValueError(f"length {length} exceeds the {len(vocab)} usable token ids")
    half = [int(i) for i in rng.choice(vocab, size=length, replace=False)]
    ids = prefix + half + half
    tokens = convert(ids) if convert is not None else [str(i) for i in ids]
    return ids, [str(t) for t in tokens]
