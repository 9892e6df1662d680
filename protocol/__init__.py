"""tensornet protocol."""
