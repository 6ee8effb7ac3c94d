"""Capture attention and post-RoPE queries/keys from a model: ``with tb_attention.capture(model) as cap: ...``.

Imports torch (and transformers only when the model is a transformers model), so ``tb_attention`` loads this
subpackage lazily. The subpackage itself is callable, so ``tb_attention.capture(model)`` works whether
``tb_attention.capture`` resolves to this module or to the function.
"""

import sys
import types

from .log import log_capture
from .record import Capture, LayerRecord, Probe, VisionInfo
from .session import capture
from .verify import VerifyReport

__all__ = ["capture", "log_capture", "Capture", "LayerRecord", "Probe", "VisionInfo", "VerifyReport"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
