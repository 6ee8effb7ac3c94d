"""Tests of the analysis stage (docs/architecture.md)."""
