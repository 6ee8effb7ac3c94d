"""Chromium tests: the real TensorBoard, the plugin iframe, every view (tests/browser_util.py)."""
