"""Reproducible benchmarks of the provider (``make bench`` runs them all and rewrites RESULTS.md)."""
