"""Tests of the serve stage (docs/architecture.md)."""
