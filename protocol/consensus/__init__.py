"""The consensus engine: the DAG, the Mysticeti-C commit rule, the committee and the sans-IO core."""
