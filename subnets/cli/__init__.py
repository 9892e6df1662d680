"""The subnet command groups (miner, validator, client), plugged into `tensornet` by entry points."""
