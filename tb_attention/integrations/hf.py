"""Hugging Face ``Trainer`` integration.

    from tb_attention.integrations.hf import AttentionCallback
    trainer = Trainer(..., args=TrainingArguments(..., report_to="tensorboard", logging_steps=10),
                      callbacks=[AttentionCallback("The cat sat on the mat.", every_n_steps=100)])

Every logging step (``args.logging_steps``, or ``metrics_every_n_steps``) the callback runs the probe and logs the
per-head metrics; every ``every_n_steps`` it also logs the full attention (and q/k). Before the first step it logs
step 0 (the untrained pattern). It writes into the Trainer's own TensorBoard run directory (the
``TensorBoardCallback``'s, with ``report_to="tensorboard"``; else ``$TENSORBOARD_LOGGING_DIR`` or
``<output_dir>/runs/<time>_<host>``, the same default), as its own event file there.

Distributed: only the world-process-zero rank runs the probe and writes; the other ranks do nothing, except
under FSDP, where every rank must take part in the forward pass (parameters are sharded) and only rank 0 writes.
"""

from __future__ import annotations

import inspect
import math
import os

from transformers import TrainerCallback

from .probe import ProbeSchedule


class AttentionCallback(ProbeSchedule, TrainerCallback):
    def __init__(
        self,
        probe=None,
        *,
        tag="probe",
        every_n_steps=100,
        metrics_every_n_steps=None,
        tokenizer=None,
        logdir=None,
        layers=None,
        heads=None,
        qk=True,
        patch_grid=None,
        probe_length=20,
        seed=0,
    ):
        super().__init__(
            probe,
            tag=tag,
            every_n_steps=every_n_steps,
            metrics_every_n_steps=metrics_every_n_steps,
            tokenizer=tokenizer,
            logdir=logdir,
            layers=layers,
            heads=heads,
            qk=qk,
            patch_grid=patch_grid,
            probe_length=probe_length,
            seed=seed,
        )
        self._metrics_every = None

    # -- Trainer events ----------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        sharded = _is_fsdp(model) or bool(getattr(args, "fsdp", None))
        self._active = state.is_world_process_zero or sharded
        if not self._active:
            return
        self.runner.prepare(getattr(processing_class, "tokenizer", None) or processing_class)
        self._metrics_every = self._metrics_interval(args, state)
        if state.is_world_process_zero and self.writer is None:
            from tb_attention.write.writer import AttentionWriter

            self.logdir = self.logdir or trainer_logdir(args)
            self.writer = AttentionWriter(self.logdir)
        self._log(model, state, full=True, metrics=True)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self._active:
            return
        step = state.global_step
        self._log(model, state, full=step % self.every_n_steps == 0, metrics=step % self._metrics_every == 0)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._close()

    # -- internals ---------------------------------------------------------------------------------------------
    def _log(self, model, state, *, full, metrics):
        self._log_once(model, state.global_step, writes=state.is_world_process_zero, full=full, metrics=metrics)

    def _metrics_interval(self, args, state):
        every = self.metrics_every_n_steps
        if every is None:
            every = getattr(args, "logging_steps", None) or self.every_n_steps
            if isinstance(every, float) and every < 1:  # a ratio of the total number of steps
                every = math.ceil((state.max_steps or 1) * every)
        return max(1, int(every))


def trainer_logdir(args):
    """The Trainer's TensorBoard run directory: its TensorBoardCallback's, else the same default it would use."""
    for callback in _trainer_callbacks():
        if type(callback).__name__ == "TensorBoardCallback" and getattr(callback, "logging_dir", None):
            return callback.logging_dir
    env = os.getenv("TENSORBOARD_LOGGING_DIR")
    if env:
        return os.path.expanduser(env)
    if getattr(args, "logging_dir", None):
        return args.logging_dir
    from transformers.integrations.integration_utils import default_logdir

    return os.path.join(args.output_dir, default_logdir())


def _trainer_callbacks():
    """The calling CallbackHandler's callbacks (the Trainer hands callbacks no handle on each other)."""
    frame = inspect.currentframe()
    try:
        for _ in range(8):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                break
            handler = frame.f_locals.get("self")
            callbacks = getattr(handler, "callbacks", None)
            if type(handler).__name__ == "CallbackHandler" and isinstance(callbacks, list):
                return callbacks
    finally:
        del frame
    return []


def _is_fsdp(model):
    if model is None:
        return False
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return False
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        FSDPModule = ()
    return any(isinstance(m, (FullyShardedDataParallel, FSDPModule)) for m in model.modules())
