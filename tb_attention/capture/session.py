"""The ``with tb_attention.capture(model, ...) as cap:`` block: picks a backend, records inputs, restores on exit."""

from __future__ import annotations

import inspect
import sys
import warnings

import torch

from . import inputs
from .locate import Locator, check_selection, wants_layer
from .record import Capture, LayerRecord
from .vision import vision_info

_CAPTURING: set[int] = set()  # ids of models inside a capture block; nesting on one model is refused


def capture(model: torch.nn.Module, layers=None, heads=None, *, qk: bool = True, dtype=torch.float16):
    """Record attention (and post-RoPE queries/keys) of the forward passes run inside the ``with`` block.

    ``layers``/``heads``: indices to keep (None = all; negative layers count from the end). Only those are copied,
    detached, to CPU in ``dtype``: float16 by default, which is what the writer stores q/k in and far finer than
    its 8-bit attention encoding; pass ``torch.float32`` for analysis. Weights are computed in float32 either way.
    The last forward pass in the block is kept.
    """
    return CaptureSession(model, layers, heads, qk=qk, dtype=dtype)


class CaptureSession:
    def __init__(self, model, layers=None, heads=None, *, qk=True, dtype=torch.float16, reference=False):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"capture() needs a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.model = model
        self.qk = qk
        self.locator = Locator(model)
        self.backend = _backend(model, self, reference)
        self.layers, self.heads = check_selection(layers, heads, self.locator.num_layers(), self.backend.num_heads())
        # The capture re-runs its input under a fresh session of this class for verify().
        self.cap = Capture(model, self.layers, self.heads, dtype, self.backend.method, session_class=CaptureSession)
        self._owned = set(self.locator.names)
        self._selected: dict = {}
        self._scratch = None
        self._hooks = []

    def __getattr__(self, name):
        # Reached only for names a session lacks, e.g. `cap.streams` after `cap = tb_attention.capture(model)`
        # without `with`: hooks installed outside a block would stay on the model, so say how to use it.
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(
            f"tb_attention.capture(model) records only inside a with block (no attribute {name!r} outside it): "
            "use it as `with tb_attention.capture(model) as cap: model(**inputs)`, then log `cap`"
        )

    # -- used by the backends -------------------------------------------------------------------------------------
    def owns(self, module: torch.nn.Module) -> bool:
        return id(module) in self._owned

    def select(self, module: torch.nn.Module, num_heads: int, cross: bool | None = None):
        """(stream, layer, module name, head indices) when this call is to be recorded, else None."""
        key = (id(module), num_heads, cross)
        if key not in self._selected:  # once per module: this runs inside every attention call
            name = self.locator.name(module)
            stream, layer, stack_len = self.locator.locate(name, cross)
            heads = self.heads if self.heads is not None else list(range(num_heads))
            if max(heads) >= num_heads:
                raise ValueError(f"head {max(heads)} out of range: {name} has {num_heads} heads")
            wanted = wants_layer(self.layers, layer, stack_len)
            self._selected[key] = (stream, layer, name, heads) if wanted else None
        return self._selected[key]

    def store(self, t: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """A compact CPU copy: never a view that would keep the model's (GPU) tensor or graph alive.

        ``owned``: ``t`` is a fresh tensor nobody else holds, so it is kept as is when it already fits.
        """
        if owned and t.device.type == "cpu" and t.dtype == self.cap.dtype and t.is_contiguous():
            return t
        # One pass: copy, cast and make contiguous together (q/k arrive as transposed views).
        return t.detach().to("cpu", self.cap.dtype, copy=True, memory_format=torch.contiguous_format)

    def scratch(self, numel: int) -> torch.Tensor | None:
        """A float32 CPU work buffer reused across the layers of a forward pass (released when the block ends);
        None when storing float32, where the result itself is the work buffer."""
        if self.cap.dtype == torch.float32:
            return None
        if self._scratch is None or self._scratch.numel() < numel:
            self._scratch = torch.empty(numel)
        return self._scratch

    def add(self, record: LayerRecord) -> None:
        self.cap.add(record)

    # -- context manager ------------------------------------------------------------------------------------------
    def __enter__(self) -> Capture:
        if id(self.model) in _CAPTURING:
            raise RuntimeError("this model is already inside a tb_attention.capture block")
        _CAPTURING.add(id(self.model))
        try:
            self.backend.install()
            # Ours around the backend's own hooks (the model may be the attention module itself): _before runs
            # first, _after last, so it sees everything they recorded.
            self._hooks = [
                self.model.register_forward_pre_hook(self._before, with_kwargs=True, prepend=True),
                self.model.register_forward_hook(self._after, with_kwargs=True),
            ]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.cap

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.backend.remove()
        self._scratch = None
        _CAPTURING.discard(id(self.model))

    def _before(self, module, args, kwargs):
        self.cap.streams.clear()
        self.cap.inputs = (inputs.to_cpu(args), inputs.to_cpu(kwargs))
        return self.backend.before(args, kwargs)

    def _after(self, module, args, kwargs, output):
        self.backend.after(output)
        self.cap.normalize_streams(self.locator.seq2seq)
        named = _named_inputs(self.model, args, kwargs)
        self.backend.fill_validity(self.cap, named)
        self.cap.vision = vision_info(self.model, named, self.cap)
        if not self.cap.streams:
            warnings.warn(f"tb_attention: no attention was recorded from {type(self.model).__name__}", stacklevel=2)


def _backend(model, session, reference):
    if "transformers" in sys.modules:
        from transformers import PreTrainedModel

        # The model itself, or one inside a wrapper (a LightningModule, DDP, a task head of your own).
        if any(isinstance(m, PreTrainedModel) for m in model.modules()):
            from .configs import supports_interface
            from .fallback import FallbackRecorder
            from .hf import HFRecorder

            return HFRecorder(session, reference) if supports_interface(model) else FallbackRecorder(session)
    from .torch_mha import MHARecorder

    return MHARecorder(session, reference)


def _named_inputs(model, args, kwargs) -> dict:
    if not args:
        return dict(kwargs)
    try:
        return dict(inspect.signature(model.forward).bind_partial(*args, **kwargs).arguments)
    except TypeError:
        return dict(kwargs)
