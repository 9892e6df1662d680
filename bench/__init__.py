"""tensornet bench."""
