"""Benchmark of the backfill: a COPY floor, the project's `run` and a naive loop (`python -m bench`)."""
