"""Measuring and reporting: the benchmark harness, parity checks and the environment they record."""
