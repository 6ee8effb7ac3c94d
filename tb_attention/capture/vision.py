"""Patch-grid metadata for ViT-style inputs, so attention can be drawn over the image."""

from __future__ import annotations

import numpy as np
import torch

from .record import VisionInfo


def vision_info(model: torch.nn.Module, named_inputs: dict, cap) -> VisionInfo | None:
    """Grid, patch size and number of leading special tokens (CLS, registers) when the input is an image."""
    pixels = named_inputs.get("pixel_values")
    config = getattr(model, "config", None)  # transformers models; wrappers and plain PyTorch have no patch size
    config = getattr(config, "vision_config", None) or config
    patch = getattr(config, "patch_size", None)
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or patch is None or not cap.streams:
        return None
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    grid = (pixels.shape[-2] // ph, pixels.shape[-1] // pw)
    recs = cap.streams.get("self") or cap.streams.get("encoder") or next(iter(cap.streams.values()))
    num_special = recs[0].weights.shape[2] - grid[0] * grid[1]
    if num_special < 0:
        return None
    return VisionInfo(grid, (ph, pw), num_special, _to_uint8(pixels))


def _to_uint8(pixels: torch.Tensor) -> np.ndarray:
    # pixel_values are normalised with the processor's mean/std, which the model does not know: rescale per image.
    x = pixels.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-12)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
