"""Throughput benchmarks of the optimizers (pytest-benchmark); run with `make bench`."""
