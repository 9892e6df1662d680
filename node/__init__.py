"""tensornet node."""
