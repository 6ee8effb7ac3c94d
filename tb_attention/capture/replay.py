"""A second, eager forward pass of the same input, for attention weights that the first pass cannot show.

Models whose attention does not go through ``AttentionInterface`` return their weights only from eager attention
with ``output_attentions=True``. Switching the user's own forward pass to eager would change its outputs (eager and
SDPA round differently), so the user's pass runs untouched and this replay runs afterwards, within the same ``with``
block: eager, ``output_attentions=True``, eval mode, no gradients, starting from the random state the user's pass
started from (a model that draws random numbers in its forward, such as ViLT's patch sampling, draws the same ones)
and restoring the state afterwards (the training loop's random stream is not advanced), and with any cache argument
copied (the user's cache is not advanced twice). It costs one extra eager forward pass per captured forward pass.
"""

from __future__ import annotations

import copy
import warnings

import torch

from .configs import switch_attention


class Replayer:
    """Remembers the arguments of the outermost transformers model's forward pass and runs it again, eagerly."""

    def __init__(self, model: torch.nn.Module):
        from transformers import PreTrainedModel

        # The transformers model itself: a wrapper's forward may not accept output_attentions.
        self.target = next(m for m in model.modules() if isinstance(m, PreTrainedModel))
        self.call = None
        self.rng = None  # the CPU random state when the remembered call started
        self.running = False
        self._hook = None

    def install(self) -> None:
        self._hook = self.target.register_forward_pre_hook(self._grab, with_kwargs=True)

    def remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.call = None

    def _grab(self, module, args, kwargs):
        if not self.running:
            self.call = (args, kwargs)  # references only, released after the forward pass
            self.rng = torch.get_rng_state()
        return None

    def replay(self):
        """The eager model output of the remembered call (None when there is none, or it cannot be replayed)."""
        if self.call is None:
            return None
        args, kwargs = self.call
        self.call = None
        try:
            kwargs = {k: _copy_cache(v) for k, v in kwargs.items()}
        except Exception as e:  # noqa: BLE001 - a cache that cannot be copied must not be advanced twice
            warnings.warn(f"tb_attention: cannot replay with a copy of the cache ({e}); nothing recorded", stacklevel=4)
            return None
        target = self.target
        modes = [(m, m.training) for m in target.modules()]
        restore = switch_attention(target, lambda current: "eager")
        devices = sorted({p.device.index or 0 for p in target.parameters() if p.device.type == "cuda"})
        self.running = True
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.set_rng_state(self.rng)
                target.eval()
                return target(*args, **{**kwargs, "output_attentions": True})
        except Exception as e:
            raise RuntimeError(
                f"tb_attention: cannot capture {type(target).__name__}: its own eager output_attentions=True pass, "
                f"which the capture needs for its weights, fails ({type(e).__name__}: {e})"
            ) from e
        finally:
            self.running = False
            restore()
            for m, training in modes:
                m.training = training


def _copy_cache(value):
    from transformers.cache_utils import Cache

    return copy.deepcopy(value) if isinstance(value, Cache) else value
