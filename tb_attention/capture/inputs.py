"""The forward pass's arguments, kept as CPU copies so that ``verify()`` can replay them on their own devices."""

from __future__ import annotations

import torch


def to_cpu(tree):
    """CPU copies of the tensors in (nested) forward arguments, with their device kept for ``verify``."""
    if isinstance(tree, torch.Tensor):
        return _Stored(tree.detach().cpu(), tree.device)
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(t) for t in tree)
    if isinstance(tree, dict):
        return {k: to_cpu(v) for k, v in tree.items()}
    return tree


def to_device(tree):
    if isinstance(tree, _Stored):
        return tree.tensor.to(tree.device)
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(t) for t in tree)
    if isinstance(tree, dict):
        return {k: to_device(v) for k, v in tree.items()}
    return tree


class _Stored:
    __slots__ = ("tensor", "device")

    def __init__(self, tensor, device):
        self.tensor, self.device = tensor, device
