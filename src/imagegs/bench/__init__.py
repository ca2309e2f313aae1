"""Benchmarks (run as modules, e.g. ``python -m imagegs.bench.speed --help``)."""
