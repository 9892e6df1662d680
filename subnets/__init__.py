"""tensornet subnets."""
