"""The public calls (`from tb_attention import notebook as tba`): BertViz's head_view / model_view / neuron_view
signatures, and show() of a capture or a logdir. Each returns a `NotebookView`, which displays itself as the last
expression of a cell and saves as a standalone HTML file."""

import os

from tb_attention.notebook import fragment, inputs, lod_parts, logdir, payload, qk_layouts


class NotebookView:
    """One output: every view of the embedded probes as tabs, opened on `view`. Displays itself in Jupyter,
    JupyterLab, VS Code and Colab (`_repr_html_`, `_repr_mimebundle_`); `.save(path)` writes a standalone page."""

    def __init__(self, probes, *, view="head", layer=None, heads=None, head=None, theme=None, notes=(), max_bytes=None):
        if theme not in (None, "dark", "light"):
            raise ValueError(f"display_mode must be 'dark', 'light' or None (follow the notebook), got {theme!r}")
        self.probes = probes
        self.view = view
        first = probes[0].last
        layers = len(first.layers)
        if layer is not None and not 0 <= int(layer) < layers:
            raise ValueError(f"layer {layer} out of range: {layers} layers are shown")
        self.options = {
            "view": view,
            "layer": 0 if layer is None else int(layer),
            "heads": None if heads is None else [int(h) for h in heads],
            "head": None if head is None else int(head),
            "hide": _hidden(probes),
            "notes": list(notes),
            "theme": theme,
        }
        cap = payload.DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        # The Q/K tab's PCA layouts, computed now: a static output has no server to ask (qk_layouts.py).
        layouts = qk_layouts.levels(probes)
        if not layouts:
            self.options["hide"].append("embedding")
        self.payload, lod_notes = payload.build(
            probes,
            self.options,
            max_bytes=cap,
            overhead=fragment.overhead(),
            keep_qk=view == "neuron",
            layouts=layouts,
            # Past 512 tokens (or 144 heads) the views ask the level-of-detail routes: their answers, computed now.
            lod=lod_parts.parts(probes, self.options["layer"]),
        )
        self.notes = list(notes) + lod_notes
        self._html = None

    def html(self):
        """The output's HTML fragment (self-contained; the same for every display)."""
        if self._html is None:
            self._html = fragment.fragment(self.payload)
        return self._html

    @property
    def nbytes(self):
        return len(self.html().encode("utf-8"))

    def _repr_html_(self):
        return self.html()

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "text/plain": repr(self)}

    def save(self, path):
        """Writes a standalone HTML page (works from file://, offline, in any browser); returns the path."""
        p = self.probes[0]
        title = f"tb-attention: {p.run} / {p.tag}"
        with open(path, "w", encoding="utf-8") as f:
            f.write(fragment.document(self.html(), title))
        return os.fspath(path)

    def __repr__(self):
        s = self.probes[0].last
        m = s.manifest
        steps = sorted({st for p in self.probes for st in p.steps})
        return (
            f"<tb-attention {self.view} view: {len(self.probes)} probe(s), {len(steps)} step(s), "
            f"{m['num_layers']} layers x {m['num_heads']} heads, {m['query_len']} tokens, {self.nbytes / 1e6:.2f} MB>"
        )


def _hidden(probes):
    """Tabs the embedded data cannot feed."""
    hide = []
    steps = {s for p in probes for s in p.steps}
    if not any(s.qk for p in probes for s in p.steps.values()):
        hide.append("neuron")
    if len(steps) < 2 and len({p.run for p in probes}) < 2:
        hide.append("diff")  # nothing to compare with: one step of one run
    if not any(p.head_stats is not None for p in probes):
        hide.append("evolution")  # no metric series over training
    return hide


def _finish(view, html_action):
    """BertViz's html_action: "view" displays now (and returns None), "return" (and None) returns the view."""
    if html_action in (None, "return"):
        return view
    if html_action == "view":
        from IPython.display import display

        display(view)
        return None
    raise ValueError(f"html_action must be 'view' or 'return', got {html_action!r}")


def head_view(
    attention=None,
    tokens=None,
    sentence_b_start=None,
    prettify_tokens=True,
    layer=None,
    heads=None,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    html_action=None,
    *,
    display_mode=None,
    max_bytes=None,
):
    """BertViz's head_view: `attention` is Hugging Face's `outputs.attentions` (batch 1) or per-layer arrays
    [heads, n, n]; encoder-decoder models pass encoder_/decoder_/cross_attention with encoder_/decoder_tokens.
    `layer` and `heads` are the initial selection (indices among the included layers)."""
    probes = inputs.from_bertviz(
        attention,
        tokens,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        encoder_attention=encoder_attention,
        decoder_attention=decoder_attention,
        cross_attention=cross_attention,
        encoder_tokens=encoder_tokens,
        decoder_tokens=decoder_tokens,
        include_layers=include_layers,
    )
    view = NotebookView(probes, view="head", layer=layer, heads=heads, theme=display_mode, max_bytes=max_bytes)
    return _finish(view, html_action)


def model_view(
    attention=None,
    tokens=None,
    sentence_b_start=None,
    prettify_tokens=True,
    display_mode=None,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    include_heads=None,
    html_action=None,
    *,
    max_bytes=None,
):
    """BertViz's model_view: every layer x head as a thumbnail. `display_mode` "dark"/"light" forces a theme;
    None (the default here) follows the notebook's."""
    probes = inputs.from_bertviz(
        attention,
        tokens,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        encoder_attention=encoder_attention,
        decoder_attention=decoder_attention,
        cross_attention=cross_attention,
        encoder_tokens=encoder_tokens,
        decoder_tokens=decoder_tokens,
        include_layers=include_layers,
        include_heads=include_heads,
    )
    view = NotebookView(probes, view="model", theme=display_mode, max_bytes=max_bytes)
    return _finish(view, html_action)


def neuron_view(model, tokenizer, sentence_a, sentence_b=None, *args, layer=None, head=None, **kwargs):
    """BertViz's neuron view for any model `tb_attention.capture` supports: runs `sentence_a` (and `sentence_b`, a
    sentence pair) through the model once, capturing the queries and keys it used (post-RoPE where it applies RoPE),
    and opens the neuron view. BertViz's order `neuron_view(model, model_type, tokenizer, sentence_a, ...)` works
    too (model_type is not needed)."""
    if isinstance(tokenizer, str):  # BertViz: show(model, model_type, tokenizer, sentence_a, sentence_b=None, ...)
        tokenizer, sentence_a, sentence_b = sentence_a, sentence_b, (args[0] if args else None)
    display_mode = kwargs.pop("display_mode", None)
    max_bytes = kwargs.pop("max_bytes", None)
    html_action = kwargs.pop("html_action", None)
    if kwargs:
        raise TypeError(f"neuron_view() got unexpected keyword arguments {sorted(kwargs)}")
    from tb_attention.notebook import neuron

    cap, tokens = neuron.run(model, tokenizer, sentence_a, sentence_b)
    probes = inputs.from_capture(cap, tokens)
    view = NotebookView(probes, view="neuron", layer=layer, head=head, theme=display_mode, max_bytes=max_bytes)
    return _finish(view, html_action)


def show(
    source,
    probe=None,
    *,
    tokens=None,
    decoder_tokens=None,
    run=None,
    steps=None,
    max_steps=logdir.DEFAULT_MAX_STEPS,
    view="head",
    layer=None,
    display_mode=None,
    max_bytes=None,
    live=False,
):
    """All views as tabs, without a TensorBoard server.

    show(cap, tokens=...): a `tb_attention.capture` result (tokens, decoder_tokens: as for add_capture).
    show("runs/exp1", probe="probe/copy"): a logdir's probe, with the step slider over `steps` ("all", a list, or by
    default at most `max_steps` evenly spaced, the last always kept: the output says which). `live=True` (the
    `live` extra, anywidget) reads every step from the logdir while the kernel runs instead of embedding some.
    """
    if isinstance(source, (str, os.PathLike)):
        if live:
            from tb_attention.notebook import widget  # optional: needs anywidget

            return widget.LiveView(os.fspath(source), probe=probe, run=run, view=view, layer=layer, theme=display_mode)
        probes, notes = logdir.load(source, probe=probe, run=run, steps=steps, max_steps=max_steps)
        return NotebookView(probes, view=view, layer=layer, theme=display_mode, notes=notes, max_bytes=max_bytes)
    if live:
        raise ValueError("live=True is for a logdir (a capture is already in memory: show(cap) embeds it)")
    if not hasattr(source, "streams"):
        raise TypeError(f"show() takes a tb_attention.capture result or a logdir path, got {type(source).__name__}")
    probes = inputs.from_capture(source, tokens, decoder_tokens, tag=probe or "probe")
    return NotebookView(probes, view=view, layer=layer, theme=display_mode, max_bytes=max_bytes)
