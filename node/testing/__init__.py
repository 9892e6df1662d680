"""Helpers that tests and benchmarks share: node processes, the chain simulator, the adversary."""
