"""The Lightning callback in a real (tiny) Lightning run, next to the TensorBoard logger's scalars."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from tb_attention.format import codec  # noqa: E402
from tb_attention.integrations.lightning import AttentionCallback  # noqa: E402


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, src):
        return self.encoder(src)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = (self(x) - x.flip(1)).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One Lightning run with the callback, read by both data loaders -> (root, callback, logger)."""
    tmp_path = tmp_path_factory.mktemp("lightning")
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 6, 16))
    probe = {"src": torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(3))}
    callback = AttentionCallback(probe, tag="probe", every_n_steps=4)
    logger = L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="tiny", version="v0")
    trainer = L.Trainer(
        max_steps=8,
        log_every_n_steps=2,
        logger=logger,
        callbacks=[callback],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=8))
    return tmp_path, callback, logger


def test_lightning_run_logs_next_to_the_logger(fitted, load):
    tmp_path, callback, logger = fitted
    assert callback.logdir == logger.log_dir
    assert callback.logged_steps == [0, 2, 4, 6, 8]
    loaded = load(tmp_path / "tiny")
    assert loaded.get("steps", run="v0", tag="probe").get_json()["steps"] == [0, 4, 8]
    _, stats = codec.unpack(loaded.get("head_stats", run="v0", tag="probe").get_data())
    assert stats["steps"].tolist() == [0, 2, 4, 6, 8]
    assert stats["entropy"].shape == (5, 2, 2) and np.isfinite(stats["distance"]).all()
    assert not np.allclose(stats["entropy"][0], stats["entropy"][-1])  # training changed the pattern
