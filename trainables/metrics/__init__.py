"""Scorers equivalent to the benchmarks' official ones (one module per kind of task)."""
