"""The chain state and its transition function: accounts, stake, subnets, escrows, governance, lifecycle."""
