"""Lightning integration: the same behaviour as the Trainer callback.

    from tb_attention.integrations.lightning import AttentionCallback
    trainer = lightning.Trainer(logger=TensorBoardLogger("runs"), log_every_n_steps=10,
                                callbacks=[AttentionCallback(probe_inputs, every_n_steps=100)])

Every ``trainer.log_every_n_steps`` optimizer steps (or ``metrics_every_n_steps``) the probe runs and the per-head
metrics are logged; every ``every_n_steps`` the full attention too; step 0 before training. It writes into the
TensorBoard logger's run directory (``trainer.logger.log_dir``; else ``logdir=`` or ``<default_root_dir>/attention``)
as its own event file. Only global rank 0 runs the probe and writes (under FSDP every rank joins the forward).
The probe runs through the ``LightningModule`` itself (``module(**inputs)``), or ``model_attr`` names the submodule
to run (e.g. ``"model"`` for a wrapped Hugging Face model).
"""

from __future__ import annotations

import os

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    from pytorch_lightning.callbacks import Callback

from .probe import ProbeSchedule


class AttentionCallback(ProbeSchedule, Callback):
    def __init__(
        self,
        probe=None,
        *,
        tag="probe",
        every_n_steps=100,
        metrics_every_n_steps=None,
        tokenizer=None,
        logdir=None,
        model_attr=None,
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
        self.model_attr = model_attr

    def on_train_start(self, trainer, pl_module):
        sharded = "FSDP" in type(getattr(trainer, "strategy", None)).__name__
        self._active = trainer.is_global_zero or sharded
        if not self._active:
            return
        self.runner.prepare()
        if trainer.is_global_zero and self.writer is None:
            from tb_attention.write.writer import AttentionWriter

            self.logdir = self.logdir or _logdir(trainer)
            self.writer = AttentionWriter(self.logdir)
        self._log(trainer, pl_module, full=True, metrics=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self._active:
            return
        step = trainer.global_step
        every = self.metrics_every_n_steps or getattr(trainer, "log_every_n_steps", None) or self.every_n_steps
        self._log(trainer, pl_module, full=step % self.every_n_steps == 0, metrics=step % max(1, int(every)) == 0)

    def on_train_end(self, trainer, pl_module):
        self._close()

    def _log(self, trainer, pl_module, *, full, metrics):
        model = getattr(pl_module, self.model_attr) if self.model_attr else pl_module
        self._log_once(model, trainer.global_step, writes=trainer.is_global_zero, full=full, metrics=metrics)


def _logdir(trainer):
    logger = getattr(trainer, "logger", None)
    log_dir = getattr(logger, "log_dir", None) if logger is not None else None
    if log_dir:
        return log_dir
    return os.path.join(trainer.default_root_dir, "attention")
