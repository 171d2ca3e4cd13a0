"""Datasets vista_sql generates or assembles for demos, tests and benchmarks."""
