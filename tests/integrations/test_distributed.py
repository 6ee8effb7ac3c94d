"""torch.distributed (gloo, 2 CPU processes): under DDP only rank 0 captures and writes; under FSDP every rank joins
the probe forward and rank 0 writes; tensor-parallel heads are gathered to rank 0 under their global index."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from tb_attention.format import codec  # noqa: E402

WORLD = 2


def _worker(rank, init_file, logdir, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        from tb_attention.integrations import distributed
        from tb_attention.integrations.probe import ProbeRunner, writer_for_rank

        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, batch_first=True, dropout=0.0)
        model = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
        probe_calls = []
        runner = ProbeRunner({"src": torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(1))}, tag="ddp")
        original = runner.capture
        runner.capture = lambda *a, **k: probe_calls.append(1) or original(*a, **k)
        writer = writer_for_rank(logdir)
        for step in range(3):
            loss = ddp(torch.randn(4, 5, 16)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if distributed.is_writer_rank():  # the other ranks pay nothing: no probe forward, no copy
                runner.log(model, writer, step, full=step == 2, metrics=True)

        # Tensor parallel: rank 0 holds heads 0-2, rank 1 head 3 of a 4-head attention (uneven split on purpose).
        g = torch.Generator().manual_seed(7)
        full = torch.softmax(torch.randn(2, 4, 5, 5, generator=g) * 3, -1)  # [layers, heads, q, k] on every rank
        mine = full[:, :3] if rank == 0 else full[:, 3:]
        gathered = distributed.gather_heads(mine, head_dim=1)
        if rank == 0:
            assert torch.equal(gathered, full)
            writer.add_attention("tp", gathered, tokens=list("abcde"), step=0)
        else:
            assert gathered is None
        if writer is not None:
            writer.close()
        with open(f"{results}/{rank}.json", "w") as f:
            json.dump(
                {"probe_calls": len(probe_calls), "writer": writer is not None, "world": distributed.world_size()}, f
            )
        dist.barrier()  # tear gloo down together: a rank leaving while its peer still works aborts the peer
    finally:
        dist.destroy_process_group()


def _both(rank, root, results):
    # One spawn for both runs (a process group each): starting processes, not the runs, is what takes the time.
    _worker(rank, f"{root}/init-ddp", f"{root}/runs/ddp", results)
    _fsdp_worker(rank, f"{root}/init-fsdp", f"{root}/runs/fsdp", results)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """The DDP and the FSDP run, once per module (both data loaders read them) -> (root, results folder)."""
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 not available")
    root = tmp_path_factory.mktemp("distributed")
    results = root / "results"
    results.mkdir()
    mp.spawn(_both, args=(str(root), str(results)), nprocs=WORLD, join=True)
    return root, results


def test_ddp_rank_zero_writes_and_tp_heads_are_gathered(spawned, load):
    tmp_path, results = spawned
    logdir = tmp_path / "runs" / "ddp"
    r0 = json.loads((results / "0.json").read_text())
    r1 = json.loads((results / "1.json").read_text())
    assert r0 == {"probe_calls": 3, "writer": True, "world": 2}
    assert r1 == {"probe_calls": 0, "writer": False, "world": 2}
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # one writer, on rank 0

    loaded = load(tmp_path / "runs")
    assert loaded.get("steps", run="ddp", tag="ddp").get_json()["steps"] == [2]
    _, stats = codec.unpack(loaded.get("head_stats", run="ddp", tag="ddp").get_data())
    assert stats["steps"].tolist() == [0, 1, 2] and stats["entropy"].shape == (3, 2, 4)
    g = torch.Generator().manual_seed(7)
    full = torch.softmax(torch.randn(2, 4, 5, 5, generator=g) * 3, -1).numpy()
    for layer in range(2):
        served = codec.decode_attention(loaded.get("attention", run="ddp", tag="tp", step=0, layer=layer).get_data())
        np.testing.assert_allclose(served, full[layer], atol=7e-3)  # heads in global order


def _fsdp_worker(rank, init_file, logdir, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        from torch.distributed.fsdp import fully_shard

        from tb_attention.capture import capture
        from tb_attention.integrations.probe import ProbeRunner, writer_for_rank

        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
        model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        src = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(1))
        if rank == 0:  # the reference: the same model, unsharded
            with torch.no_grad(), capture(model.eval()) as cap:
                model(src)
            reference = torch.stack([r.weights[0] for r in cap.streams["self"]]).numpy()
            np.save(f"{results}/reference.npy", reference)
        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        # Parameters are sharded: every rank joins the probe forward; only rank 0 writes.
        ProbeRunner({"src": src}, tag="fsdp").log(model, writer_for_rank(logdir), 0)
        with open(f"{results}/fsdp{rank}.json", "w") as f:
            json.dump({"rank": rank}, f)
        dist.barrier()  # tear gloo down together (see _worker)
    finally:
        dist.destroy_process_group()


def test_fsdp_all_ranks_join_the_probe_forward_rank_zero_writes(spawned, load):
    tmp_path, results = spawned
    logdir = tmp_path / "runs" / "fsdp"
    assert (results / "fsdp1.json").exists()
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    reference = np.load(results / "reference.npy")
    loaded = load(tmp_path / "runs")
    for layer in range(2):
        served = codec.decode_attention(loaded.get("attention", run="fsdp", tag="fsdp", step=0, layer=layer).get_data())
        np.testing.assert_allclose(served, reference[layer], atol=7e-3)
