"""Tests of the write stage (docs/architecture.md)."""
