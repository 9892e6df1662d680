"""What changes the state, by family: one module per group of transactions, plus the end-of-height steps.

Each handler takes the `State` (protocol/state/state.py, the data) and follows one convention: check
everything, raising TxRejected with the rule that failed, then (unless `dry`, the mempool's dry run) change
the state through its public ledger primitives. Handlers import the data, never protocol/state/transition.py,
which dispatches to them (spec/state.md §2)."""
