"""The client kit: a node's HTTP API client, wallets and homes. What the CLI, subnets and scripts import."""
