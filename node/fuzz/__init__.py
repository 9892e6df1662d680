"""`tensornet fuzz`: structure-aware fuzzing of every decoder, validator and the state transition.

Layout (each module says why it exists):
- `targets`: what is fuzzed: one `Target` per message decoder/validator, the DAG block verifier and the
  state transition, each with real seed inputs from small deterministic fixtures;
- `mutate`: decode the CBOR, mutate fields, types, lengths and nesting, re-encode canonically or not,
  re-sign with a test key, and raw byte mutations;
- `engines`: the harness that classifies each input (typed rejection, acceptance, crash, hang, memory)
  and the random, hypothesis and atheris engines;
- `corpus`: seed corpora and findings on disk, and capture from a running network;
- `live`: mutants sent to a running node over real libp2p while its API is watched.

A crash is anything other than a typed rejection (`protocol.errors.ProtocolError`, plus a target's own
typed errors) or an acceptance that passes the target's oracle (e.g. accepted bytes are canonical).
"""
