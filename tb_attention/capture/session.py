"""The ``with tb_attention.capture(model, ...) as cap:`` block: picks a backend, records inputs, restores on exit."""

from __future__ import annotations

import inspect
import re
import sys
import warnings

import torch

from tb_attention.analysis.recompute import check_rows

from . import inputs
from .locate import Locator, check_selection, wants_layer
from .masks import classify, to_additive
from .record import Capture, LayerRecord
from .vision import vision_infos
from .weights import attention_probs

_CAPTURING: set[int] = set()  # ids of models inside a capture block; nesting on one model is refused


def capture(
    model: torch.nn.Module, layers=None, heads=None, *, qk: bool = True, dtype=torch.float16, weights: bool = True
):
    """Record attention (and post-RoPE queries/keys) of the forward passes run inside the ``with`` block.

    ``layers``/``heads``: indices to keep (None = all; negative layers count from the end). Only those are copied,
    detached, to CPU in ``dtype``: float16 by default, which is what the writer stores q/k in and far finer than
    its 8-bit attention encoding; pass ``torch.float32`` for analysis. Weights are computed in float32 either way.
    The last forward pass in the block is kept.

    ``weights=False`` (long inputs): the full weights are never materialised; the capture keeps q/k, the mask's
    description and only the weights of ``analysis.recompute.check_rows`` query rows (from the unrounded q/k and
    the real mask), so that logging it (every layer stored as q/k, ``store="qk"``) can still check what the
    stored q/k rebuild. Such a capture has no ``LayerRecord.weights``.
    """
    return CaptureSession(model, layers, heads, qk=qk, dtype=dtype, weights=weights)


class CaptureSession:
    def __init__(self, model, layers=None, heads=None, *, qk=True, dtype=torch.float16, reference=False, weights=True):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"capture() needs a torch.nn.Module, got {type(model).__name__}")
        if not weights and not qk:
            raise ValueError("capture(weights=False) keeps only q/k: it cannot also drop them (qk=False)")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.model = model
        self.qk = qk
        self.weights = bool(weights) or reference  # reference runs (verify) always hold eager's own weights
        self.layers = self.heads = None
        self.locator = Locator(model)
        self._static: dict = {}  # (id(module), cross) -> (name, stream key, stack length)
        self._calls: dict = {}  # per forward pass: stream key -> calls so far (the next call's layer)
        self._seen: dict = {}  # per forward pass: stream key -> ids of the modules called
        self._looped: set = set()  # stream keys whose modules were called more than once in this pass
        self._pending: dict = {}  # stream key -> records, named when the pass is over
        self._named: list = []  # records that come with their stream name (the fallback's output fields)
        self._finishing = False  # inside _after: a forward pass now is the backend's own replay, not the user's
        self.backend = _backend(model, self, reference)
        self.layers, self.heads = check_selection(layers, heads, self.locator.num_layers(), self.backend.num_heads())
        # The capture re-runs its input under a fresh session of this class for verify().
        self.cap = Capture(model, self.layers, self.heads, dtype, self.backend.method, session_class=CaptureSession)
        self._owned = set(self.locator.names)
        self._heads_checked: set = set()
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
        """(stream key, layer, module name, head indices) when this call is to be recorded, else None.

        The layer is the call's position among this pass's calls with the same stream key: a module used for
        several layers (ALBERT, looped stacks) gives one layer per call."""
        static = self._static.get((id(module), cross))
        if static is None:  # once per module: this runs inside every attention call
            name = self.locator.name(module)
            key, size = self.locator.key(name, cross)
            static = self._static[(id(module), cross)] = (name, key, size)
        name, key, size = static
        heads = self.heads if self.heads is not None else list(range(num_heads))
        if (id(module), num_heads) not in self._heads_checked:
            if max(heads) >= num_heads:
                raise ValueError(f"head {max(heads)} out of range: {name} has {num_heads} heads")
            self._heads_checked.add((id(module), num_heads))
        layer = self._calls.get(key, 0)
        self._calls[key] = layer + 1
        seen = self._seen.setdefault(key, set())
        if id(module) in seen:
            self._looped.add(key)  # from now on negative indices cannot be resolved yet: keep every call
        seen.add(id(module))
        uncertain = key in self._looped or size is None  # negative indices resolved when the pass is over
        wanted = wants_layer(self.layers, layer, size or 0) or (uncertain and min(self.layers) < 0)
        return (key, layer, name, heads) if wanted else None

    def store(self, t: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """A compact CPU copy: never a view that would keep the model's (GPU) tensor or graph alive.

        ``owned``: ``t`` is a fresh tensor nobody else holds, so it is kept as is when it already fits.
        """
        if owned and t.device.type == "cpu" and t.dtype == self.cap.dtype and t.is_contiguous():
            return t
        # One pass: copy, cast and make contiguous together (q/k arrive as transposed views).
        return t.detach().to("cpu", self.cap.dtype, copy=True, memory_format=torch.contiguous_format)

    def attention(self, q, k, kv_map, scaling, allowed=None, mask_bias=None, softcap=None, bias=None, sinks=None):
        """(weights, check rows, their weights) of one call: all the weights, in the capture's dtype, or with
        weights=False none of them and only the check rows' (float32, from the same unrounded q/k and the same
        mask and terms, so the writer compares what the stored q/k rebuild with what the model computed)."""
        if self.weights:
            numel = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
            mask = to_additive(allowed, mask_bias)
            weights = attention_probs(
                q, k, kv_map, scaling, mask, softcap, bias, sinks, dtype=self.cap.dtype, scratch=self.scratch(numel)
            )
            return weights, None, None
        rows = check_rows(q.shape[2])
        pick = torch.as_tensor(rows, device=q.device)
        mask = to_additive(_rows(allowed, pick), _rows(mask_bias, pick))
        check = attention_probs(q[:, :, pick], k, kv_map, scaling, mask, softcap, _rows(bias, pick), sinks)
        return None, rows, check

    def scratch(self, numel: int) -> torch.Tensor | None:
        """A float32 CPU work buffer reused across the layers of a forward pass (released when the block ends);
        None when storing float32, where the result itself is the work buffer."""
        if self.cap.dtype == torch.float32:
            return None
        if self._scratch is None or self._scratch.numel() < numel:
            self._scratch = torch.empty(numel)
        return self._scratch

    def add(self, record: LayerRecord, key=None) -> None:
        """Keep a record of this pass: under its stream key (named when the pass is over), or, without a key,
        under the stream name it carries."""
        if key is None:
            self._named.append(record)
        else:
            self._pending.setdefault(key, []).append(record)

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
        if self._finishing:
            return None
        self.cap.streams.clear()
        self._calls, self._seen, self._looped, self._pending, self._named = {}, {}, set(), {}, []
        self.cap.inputs = (inputs.to_cpu(args), inputs.to_cpu(kwargs))
        return self.backend.before(args, kwargs)

    def _after(self, module, args, kwargs, output):
        if self._finishing:
            return
        self._finishing = True
        try:
            self._finish(args, kwargs, output)
        finally:
            self._finishing = False

    def _finish(self, args, kwargs, output) -> None:
        self.backend.after(output)
        self._name_streams()
        named = _named_inputs(self.model, args, kwargs)
        self.backend.fill_validity(self.cap, named)
        _describe_masks(self.cap)
        self.cap.visions = vision_infos(self.model, named, self.cap, self.locator)
        if not self.cap.streams:
            warnings.warn(f"tb_attention: no attention was recorded from {type(self.model).__name__}", stacklevel=2)

    def _name_streams(self) -> None:
        """Streams named from the stacks used in this pass; with negative layer indices, the calls beyond the
        selection are dropped now that each stream's length is known."""
        labels = self.locator.labels(self._pending)
        streams: dict[str, list[LayerRecord]] = {}
        for key, recs in self._pending.items():
            total = self._calls.get(key, len(recs))
            if self.layers is not None:
                wanted = {lay if lay >= 0 else lay + total for lay in self.layers}
                recs = [r for r in recs if r.layer in wanted]
                lost = sorted(w for w in wanted if 0 <= w < total and w not in {r.layer for r in recs})
                if lost:
                    warnings.warn(
                        f"tb_attention: layers {lost} of {labels[key]!r} were not recorded: its modules are called "
                        "several times per pass; select them with non-negative indices",
                        stacklevel=3,
                    )
            for r in recs:
                r.stream = labels[key]
            streams[labels[key]] = recs
        for r in self._named:
            streams.setdefault(r.stream, []).append(r)
        self.cap.streams = {k: sorted(v, key=lambda r: r.layer) for k, v in streams.items() if v}
        self._pending, self._named = {}, []


def _rows(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    # Masks and biases may broadcast over the query axis (size 1); only a real query axis is indexed.
    return t if t is None or t.shape[-2] == 1 else t[..., rows, :]


def _describe_masks(cap) -> None:
    """Name each recorded mask (masks.classify) now that the padding is known; keep the tensor only if no name
    describes it."""
    done: dict = {}
    for stream, recs in cap.streams.items():
        for r in recs:
            if r.mask_kind != "pending":
                continue
            key = (id(r.mask), stream, r.extras.get("sliding_window"))
            if key not in done:
                done[key] = classify(r.mask, r.query_valid, r.key_valid, r.extras.get("sliding_window"))
            r.mask_kind, r.mask_params = done[key][0], dict(done[key][1])
            if r.mask_kind != "tensor":
                r.mask = None


def _backend(model, session, reference):
    if "transformers" in sys.modules:
        from transformers import PreTrainedModel

        # The model itself, or one inside a wrapper (a LightningModule, DDP, a task head of your own).
        if any(isinstance(m, PreTrainedModel) for m in model.modules()):
            from .configs import supports_interface
            from .fallback import FallbackRecorder, NoAttentionError
            from .hf import HFRecorder

            if not _has_attention(model):
                raise NoAttentionError(
                    f"tb_attention: {type(model).__name__} has no attention to capture (no attention module in it)"
                )
            return HFRecorder(session, reference) if supports_interface(model) else FallbackRecorder(session)
    from .torch_mha import MHARecorder

    return MHARecorder(session, reference)


_ATTENTION_CLASS = re.compile(r"attention|attn|mhsa|selfatt", re.IGNORECASE)


def _has_attention(model) -> bool:
    return any(_ATTENTION_CLASS.search(type(m).__name__) for m in model.modules())


def _named_inputs(model, args, kwargs) -> dict:
    if not args:
        return dict(kwargs)
    try:
        return dict(inspect.signature(model.forward).bind_partial(*args, **kwargs).arguments)
    except TypeError:
        return dict(kwargs)
