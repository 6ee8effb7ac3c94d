"""The write side: `AttentionWriter` validates and copies on the training thread (`validation`, `buffers`), hands
jobs to one background thread (`jobs`, `queue`) that encodes them into TensorBoard events (`encode`).

Imports `format/` and `analysis/` (and `capture/` lazily, for `add_capture`); never `serve/`."""
