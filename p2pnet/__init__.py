"""tensornet p2pnet."""
