"""tensornet tests."""
