"""Runs a fixed probe input through a model and logs its attention (every N steps) and metrics (every step asked).

Shared by the Trainer and Lightning callbacks and the checkpoint CLI. Capture goes through ``tb_attention.capture``
(Hugging Face models through ``AttentionInterface``, plain PyTorch through ``nn.MultiheadAttention``; other
Hugging Face models through eager ``output_attentions``).
"""

from __future__ import annotations

import torch

from tb_attention.analysis import metrics as _metrics
from tb_attention.integrations import distributed


class ProbeRunner:
    """``probe``: text (str or list of str, tokenized with ``tokenizer``), a dict of model inputs (tensors with a
    batch dimension, e.g. a tokenizer's output or ``{"pixel_values": ...}``), or None: a repeated-random-token probe
    (``probe_length`` tokens, twice) drawn from the tokenizer's vocabulary, which gives a meaningful induction score.

    Probes of one example log their attention under ``tag``; a batch logs attention under ``tag/<row>`` and the
    metrics of the whole batch (padding excluded) under ``tag``.
    """

    def __init__(
        self,
        probe=None,
        *,
        tag="probe",
        tokenizer=None,
        layers=None,
        heads=None,
        qk=True,
        patch_grid=None,
        probe_length=20,
        seed=0,
    ):
        self.probe = probe
        self.tag = tag
        self.tokenizer = tokenizer
        self.layers, self.heads, self.qk = layers, heads, qk
        self.patch_grid = patch_grid
        self.probe_length, self.seed = probe_length, seed
        self.inputs = None
        self.tokens = None

    def prepare(self, tokenizer=None):
        """Builds the model inputs once (CPU tensors); ``tokenizer`` is used when none was given at construction."""
        if self.inputs is not None:
            return self.inputs
        tok = self.tokenizer or tokenizer
        probe = self.probe
        if probe is None:
            if tok is None:
                raise ValueError("no probe given and no tokenizer to build the repeated-random-token probe from")
            ids, _ = _metrics.repeated_random_tokens(tok, self.probe_length, seed=self.seed)
            inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        elif isinstance(probe, (str, list, tuple)):
            if tok is None:
                raise ValueError("a text probe needs a tokenizer (pass tokenizer=)")
            texts = [probe] if isinstance(probe, str) else list(probe)
            inputs = dict(tok(texts, return_tensors="pt", padding=True))
        elif hasattr(probe, "items"):
            inputs = {k: v for k, v in probe.items()}
        else:
            raise TypeError(f"probe must be text, a dict of model inputs or None, got {type(probe).__name__}")
        self.inputs = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        ids = self.inputs.get("input_ids")
        if tok is not None and isinstance(ids, torch.Tensor):
            self.tokens = [[str(t) for t in tok.convert_ids_to_tokens(row.tolist())] for row in ids]
        return self.inputs

    def capture(self, model, qk=None):
        """Runs the probe (eval mode, no grad; the training mode is restored) and returns the ``Capture``."""
        from tb_attention.capture import capture

        if self.inputs is None:
            self.prepare()
        device = _device(model)
        inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.inputs.items()}
        training = model.training
        model.eval()
        try:
            with torch.no_grad(), capture(model, self.layers, self.heads, qk=self.qk if qk is None else qk) as cap:
                model(**inputs)
        finally:
            model.train(training)
        return cap

    def log(self, model, writer, step, *, full=True, metrics=True):
        """One probe forward; writes attention (``full``) and/or metrics. ``writer`` None: forward only (ranks that
        must take part in a sharded forward but do not write)."""
        if not (full or metrics):
            return
        cap = self.capture(model, qk=self.qk and full)
        if writer is None:
            return
        # Metrics first, from the padded batch with its masks (and the ViT grid): a probe step then keeps these
        # and add_attention does not compute them again.
        self._log_metrics(writer, cap, step)
        if full:
            from tb_attention.capture import log_capture

            log_capture(writer, self.tag, cap, step=step, tokens=self.tokens)

    def _log_metrics(self, writer, cap, step):
        ids = self.inputs.get("input_ids")
        dec = self.inputs.get("decoder_input_ids")
        for stream, recs in cap.streams.items():
            name = self.tag if len(cap.streams) == 1 else f"{self.tag}/{stream}"
            tokens = {"decoder": dec, "cross": None}.get(stream, ids)
            grid = self.patch_grid
            if grid is None and cap.vision is not None and stream in ("self", "encoder"):
                grid = cap.vision.grid
            writer.add_metrics(
                name,
                [r.weights for r in recs],
                step=step,
                tokens=tokens,
                query_mask=recs[0].query_valid,
                key_mask=recs[0].key_valid,
                patch_grid=grid if stream != "cross" else None,
                # Sink logits (GPT-OSS) take part of each row: rows rightly sum below 1.
                partial_rows=any(r.extras.get("sinks") is not None for r in recs),
            )


class ProbeSchedule:
    """What the Trainer and Lightning callbacks share: the probe, how often to log it, the writer, and which steps
    were logged (a resumed run or gradient accumulation reaches the same optimizer step more than once)."""

    def __init__(
        self,
        probe,
        *,
        tag,
        every_n_steps,
        metrics_every_n_steps,
        tokenizer,
        logdir,
        layers,
        heads,
        qk,
        patch_grid,
        probe_length,
        seed,
    ):
        if int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.runner = ProbeRunner(
            probe,
            tag=tag,
            tokenizer=tokenizer,
            layers=layers,
            heads=heads,
            qk=qk,
            patch_grid=patch_grid,
            probe_length=probe_length,
            seed=seed,
        )
        self.every_n_steps = int(every_n_steps)
        self.metrics_every_n_steps = metrics_every_n_steps
        self.logdir = logdir
        self.writer = None
        self._active = False
        self.logged_steps = []

    def _log_once(self, model, step, *, writes, full, metrics):
        """Runs the probe at `step` unless nothing is due or the step is already logged; only `writes` ranks write."""
        if model is None or not (full or metrics) or (self.logged_steps and step <= self.logged_steps[-1]):
            return
        self.runner.log(model, self.writer if writes else None, step, full=full, metrics=metrics)
        self.logged_steps.append(step)

    def _close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self._active = False


def _device(model):
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def writer_for_rank(logdir, **kwargs):
    """An AttentionWriter on the rank that writes (rank 0, or the only process); None on the others."""
    if not distributed.is_writer_rank():
        return None
    from tb_attention.write.writer import AttentionWriter

    return AttentionWriter(logdir, **kwargs)
