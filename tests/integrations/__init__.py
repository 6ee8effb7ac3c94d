"""Tests of the integrations stage (docs/architecture.md)."""
