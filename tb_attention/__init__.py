"""tb-attention: watch transformer attention change during training, in TensorBoard.

Importing the package stays light (TensorBoard imports its entry point at start-up); the writer and the
capture tools load on first use. Where each stage lives: docs/architecture.md.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["AttentionWriter", "capture"]

# Public names that live in a stage's folder, loaded on first use. `metrics` and `distributed` keep the
# documented spellings `tb_attention.metrics.repeated_random_tokens` and `tb_attention.distributed.gather_heads`.
_LAZY = {
    "AttentionWriter": ("tb_attention.write.writer", "AttentionWriter"),
    "capture": ("tb_attention.capture", None),  # the subpackage is callable: tb_attention.capture(model, ...)
    "metrics": ("tb_attention.analysis.metrics", None),
    "distributed": ("tb_attention.integrations.distributed", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tb_attention' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
