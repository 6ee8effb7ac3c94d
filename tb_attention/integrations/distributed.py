"""Distributed training: only rank 0 captures and writes; tensor-parallel head shards are gathered to rank 0.

Nothing here imports torch unless the caller already has it loaded, so single-process numpy users pay nothing.
"""

import sys


def _dist():
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def rank():
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def world_size():
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def is_writer_rank():
    """True on the process that writes: rank 0 of an initialised process group, or the only process."""
    return rank() == 0


def gather_heads(attention, head_dim=-3, group=None, dst=0):
    """Tensor parallelism: each rank holds some heads of a layer's attention (e.g. [heads_r, q, k] or
    [batch, heads_r, q, k]); returns the full tensor (rank order = head order, i.e. the global head index) on
    `dst` and None elsewhere. Ranks may hold different numbers of heads. Every rank of `group` must call it.
    Without an initialised process group the input is returned unchanged.
    """
    import torch

    dist = _dist()
    if dist is None:
        return attention
    t = attention.detach().contiguous()
    dim = head_dim % t.dim()
    n = dist.get_world_size(group)
    counts = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(n)]
    dist.all_gather(counts, torch.tensor([t.shape[dim]], device=t.device), group=group)
    counts = [int(c) for c in counts]
    most = max(counts)
    if t.shape[dim] < most:
        pad = list(t.shape)
        pad[dim] = most - t.shape[dim]
        t = torch.cat([t, t.new_zeros(pad)], dim)
    me = dist.get_rank(group) if group is not None else dist.get_rank()
    parts = [torch.empty_like(t) for _ in range(n)] if me == dst else None
    dist.gather(t, parts, dst=dst, group=group)
    if me != dst:
        return None
    return torch.cat([p.narrow(dim, 0, c) for p, c in zip(parts, counts)], dim)
