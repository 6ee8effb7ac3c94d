"""tb-attention: watch transformer attention change during training, in TensorBoard.

Importing the package stays light (TensorBoard imports its entry point at start-up); the writer and the
capture tools load on first use.
"""

__version__ = "0.1.0"
__all__ = ["AttentionWriter", "capture"]


def __getattr__(name):
    if name == "AttentionWriter":
        from tb_attention.writer import AttentionWriter

        return AttentionWriter
    if name == "capture":  # the subpackage is callable: tb_attention.capture(model, ...)
        import importlib

        return importlib.import_module("tb_attention.capture")
    raise AttributeError(f"module 'tb_attention' has no attribute {name!r}")
