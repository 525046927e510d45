"""Benchmarks on the local-boot harness (not tests: they print figures, never assert timings). bench/README.md."""
