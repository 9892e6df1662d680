"""Testnets: generation, a whole network on one machine, and network namespaces."""
