"""BertViz's arguments and tb_attention captures -> probes (probes.py), checked as the writer checks what it logs
(the same functions, so a call that the writer would refuse is refused here with the same message)."""

import numpy as np

from tb_attention.format import image as image_mod
from tb_attention.format import manifest as manifest_mod
from tb_attention.format import metadata
from tb_attention.notebook.probes import ArrayLayer, Probe, Step, qk_container

RUN = "notebook"  # the run name arrays and captures are shown under (the probe menu says "notebook / attention")


def prettify(tokens):
    """BertViz's prettify_tokens: byte-level BPE's Ġ and SentencePiece's ▁ become spaces, </w> is dropped."""
    return [t.replace("Ġ", " ").replace("▁", " ").replace("</w>", "") for t in tokens]


def _validation():
    from tb_attention.write import validation  # the writer's own argument checks, loaded on first use

    return validation


def build_step(
    attention,
    tokens,
    *,
    key_tokens=None,
    queries=None,
    keys=None,
    segments=None,
    layers=None,
    patch_grid=None,
    image=None,
):
    """One probe step from per-layer weights (and optional q/k), validated like `AttentionWriter.add_attention`."""
    validation = _validation()
    from tb_attention.write import probe_args

    weights = validation.attention(attention)
    num_layers, heads, query_len, key_len = weights.shape
    tokens = validation.token_list(tokens, "tokens", query_len)
    if key_tokens is None and key_len != query_len:
        raise ValueError(f"key_len {key_len} differs from query_len {query_len}: pass key_tokens")
    if key_tokens is not None:
        key_tokens = validation.token_list(key_tokens, "key_tokens", key_len)
    q, k = probe_args.vectors(queries, keys, weights.shape, np.empty)
    fields = {
        "version": metadata.VERSION,
        "tokens": tokens,
        "key_tokens": key_tokens,
        "num_layers": num_layers,
        "num_heads": heads,
        "query_len": query_len,
        "key_len": key_len,
        "has_qk": q is not None,
        "num_kv_heads": None if k is None else int(k.shape[1]),
        "d_head": None if q is None else int(q.shape[-1]),
    }
    segments = validation.segment_ids(segments, query_len)
    if segments is not None:
        fields["segments"] = [int(s) for s in segments]
    info = probe_args.layer_info(layers, num_layers, heads, fields["num_kv_heads"])
    if info is not None:
        fields["layers"] = info
    png = None
    grid = image_mod.grid(patch_grid, query_len, key_len)
    if grid is not None:
        fields["patch_grid"] = grid
    if image is not None:
        if grid is None:
            raise ValueError("image= needs patch_grid=(rows, cols): which tokens are which patches")
        img = image_mod.validate(image)
        image_mod.check_fits(img, grid)
        png = image_mod.encode_png(img)
        index = metadata.image_index(num_layers, q is not None)
        fields["image"] = {"index": index, "width": int(img.shape[1]), "height": int(img.shape[0])}
    manifest_mod.validate(fields)  # what the reader would refuse is refused now, not in the browser
    qks = None if q is None else [qk_container(q[i], k[i]) for i in range(num_layers)]
    return Step(fields, [ArrayLayer(w) for w in weights], qks, png)


def _select(attention, include_layers, include_heads):
    """BertViz's include_layers / include_heads: drops layers and heads before anything is encoded; returns the
    selected per-layer arrays and the manifest's `layers` (the model's indices of what is kept)."""
    layers = list(attention) if isinstance(attention, (list, tuple)) else [attention[i] for i in range(len(attention))]
    indices = list(range(len(layers))) if include_layers is None else [int(i) for i in include_layers]
    for i in indices:
        if not -len(layers) <= i < len(layers):
            raise ValueError(f"include_layers: layer {i} out of range ({len(layers)} layers)")
    indices = [i % len(layers) for i in indices]
    picked = [layers[i] for i in indices]
    if include_heads is not None:
        heads = [int(h) for h in include_heads]
        picked = [_heads(a, heads) for a in picked]
    entries = [{"index": i} if include_heads is None else {"index": i, "heads": heads} for i in indices]
    return picked, entries


def _heads(layer, heads):
    shape = tuple(layer.shape)
    if len(shape) == 4:  # BertViz's [1, H, n, n]
        return layer[:, heads]
    if len(shape) == 3:
        return layer[heads]
    raise ValueError(f"each layer's attention must be [1, heads, n, n] or [heads, n, n], got shape {shape}")


def _check_tokens(attention, tokens, what="tokens"):
    """BertViz's message when tokens and attention disagree."""
    n = tuple(attention[0].shape)[-1]
    if tokens is not None and len(tokens) != n:
        raise ValueError(f"Attention has {n} positions, while number of {what} is {len(tokens)}")


def from_bertviz(
    attention=None,
    tokens=None,
    *,
    sentence_b_start=None,
    prettify_tokens=True,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    include_heads=None,
    tag="attention",
):
    """-> [Probe]: one for self-attention, or `<tag>/encoder`, `<tag>/decoder`, `<tag>/cross` (the Encoder / Decoder
    / Cross buttons, BertViz's Attention menu) for encoder-decoder models."""
    pretty = prettify if prettify_tokens else list
    seq2seq = {"encoder": encoder_attention, "decoder": decoder_attention, "cross": cross_attention}
    if attention is not None:
        if any(v is not None for v in seq2seq.values()):
            raise ValueError("pass attention, or encoder_attention/decoder_attention/cross_attention, not both")
        if tokens is None:
            raise ValueError("tokens are required: one string per position")
        picked, entries = _select(attention, include_layers, include_heads)
        _check_tokens(picked, tokens)
        segments = None
        if sentence_b_start is not None:
            b = int(sentence_b_start)
            if not 0 < b < len(tokens):
                raise ValueError(f"sentence_b_start {b} must lie inside the {len(tokens)} tokens")
            segments = [0] * b + [1] * (len(tokens) - b)
        step = build_step(picked, pretty(tokens), segments=segments, layers=entries)
        return [Probe(RUN, tag, {0: step})]
    if all(v is None for v in seq2seq.values()):
        raise ValueError("pass attention (self-attention), or encoder_attention/decoder_attention/cross_attention")
    probes = []
    for part, attn in seq2seq.items():
        if attn is None:
            continue
        q_tokens = encoder_tokens if part == "encoder" else decoder_tokens
        k_tokens = decoder_tokens if part == "decoder" else encoder_tokens
        if q_tokens is None or k_tokens is None:
            raise ValueError(f"{part}_attention needs encoder_tokens and decoder_tokens (the positions it covers)")
        picked, entries = _select(attn, include_layers, include_heads)
        _check_tokens(picked, k_tokens, "encoder tokens" if part != "decoder" else "decoder tokens")
        step = build_step(
            picked,
            pretty(q_tokens),
            key_tokens=pretty(k_tokens) if part == "cross" else None,
            layers=entries,
        )
        probes.append(Probe(RUN, f"{tag}/{part}", {0: step}))
    return probes


class _Collector:
    """Stands in for the writer in `capture.log.log_capture`: the same tags, tokens, keys and extras the writer
    would log, kept in memory as probes."""

    def __init__(self, pretty):
        self.pretty = pretty
        self.probes = []

    def add_attention(self, tag, attentions, *, tokens, step, key_tokens=None, partial_rows=False, **kwargs):
        del step, partial_rows  # one step; rows below 1 (sinks) need no warning here
        tokens = self.pretty(tokens)
        key_tokens = None if key_tokens is None else self.pretty(key_tokens)
        self.probes.append(Probe(RUN, tag, {0: build_step(attentions, tokens, key_tokens=key_tokens, **kwargs)}))


def from_capture(cap, tokens=None, decoder_tokens=None, *, tag="probe", prettify_tokens=True, image=None):
    """-> [Probe] of a `tb_attention.capture` result, as `AttentionWriter.add_capture` would log it."""
    from tb_attention.capture import log

    if cap.streams and not cap.has_weights:
        raise ValueError(
            "this capture was made with tb_attention.capture(model, weights=False) and holds no attention weights "
            "to show: capture again without weights=False for a notebook view (or log it with add_capture, whose "
            "views rebuild the weights from q/k)"
        )
    collector = _Collector(prettify if prettify_tokens else list)
    log.log_capture(collector, tag, cap, step=0, tokens=tokens, decoder_tokens=decoder_tokens, image=image)
    return collector.probes
