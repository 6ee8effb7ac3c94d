"""Patch-grid metadata for ViT-style inputs, so attention can be drawn over the image."""

from __future__ import annotations

import numpy as np
import torch

from .record import VisionInfo


def vision_infos(model: torch.nn.Module, named_inputs: dict, cap, locator) -> dict[str, VisionInfo]:
    """Per stream of image patches: grid, patch size, leading special tokens (CLS, registers) and the image.

    A stream is an image stream when the nearest config above its attention modules (the module's own, or a
    parent's) has a patch size (a ViT, the vision tower of CLIP or LLaVA) and its tokens are that patch grid plus
    at most 16 leading special tokens."""
    pixels = named_inputs.get("pixel_values")
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or not cap.streams:
        return {}
    modules = None
    found = {}
    for stream, recs in cap.streams.items():
        r = recs[0]
        if r.shape[2] != r.shape[3]:
            continue
        modules = modules if modules is not None else dict(model.named_modules())
        patch = _patch_size(modules, r.module_name)
        if patch is None:
            continue
        grid = (pixels.shape[-2] // patch[0], pixels.shape[-1] // patch[1])
        num_special = r.shape[2] - grid[0] * grid[1]
        if 0 <= num_special <= 16:
            found[stream] = VisionInfo(grid, patch, num_special, _to_uint8(pixels))
    return found


def _patch_size(modules: dict, name: str) -> tuple[int, int] | None:
    parts = name.split(".")
    for i in range(len(parts), -1, -1):
        config = getattr(modules.get(".".join(parts[:i])), "config", None)
        if config is not None and hasattr(config, "to_dict"):
            patch = getattr(config, "patch_size", None)
            if isinstance(patch, int):
                return patch, patch
            if isinstance(patch, (list, tuple)) and len(patch) == 2:
                return int(patch[0]), int(patch[1])
            return None
    return None


def _to_uint8(pixels: torch.Tensor) -> np.ndarray:
    # pixel_values are normalised with the processor's mean/std, which the model does not know: rescale per image.
    x = pixels.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-12)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
