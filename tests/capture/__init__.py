"""Tests of the capture stage (docs/architecture.md)."""
