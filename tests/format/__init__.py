"""Tests of the format stage (docs/architecture.md)."""
