"""Tests of what crosses stages: a model captured, logged, then read back through the plugin."""
