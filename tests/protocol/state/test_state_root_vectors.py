"""spec/vectors/state_root.json: the state root of a small state, pinned (spec/state.md §9.1).

A failure here means the key/value table of the state root changed: if that was deliberate, regenerate with
`python -m tests.protocol.state.gen_state_root_vectors`, review the diff and say why in the commit.
"""

from __future__ import annotations

import json

from protocol import codec
from tests.protocol.state.gen_state_root_vectors import OUT, build
from tests.protocol.state.gen_state_tree_vectors import reference_root
from tests.protocol.state.test_state_root import rich_chain

VECTORS = json.loads(OUT.read_text())
REGEN = "state root key/value table changed? regenerate, review: python -m tests.protocol.state.gen_state_root_vectors"


def test_vector_is_what_the_generator_writes():
    assert build() == VECTORS, REGEN


def test_vector_root_is_the_tree_definition_over_its_records_and_the_states_root():
    entries = {bytes.fromhex(r["key"]): bytes.fromhex(r["value"]) for r in VECTORS["records"]}
    assert reference_root(entries).hex() == VECTORS["root"]
    assert rich_chain().state.root().hex() == VECTORS["root"], REGEN
    assert all(codec.encode(codec.decode(v)) == v for v in entries.values())  # values are canonical CBOR
    assert {r["family"] for r in VECTORS["records"]} == {
        "global", "account", "nonce", "stake", "hotkey", "subnet", "neuron", "escrow", "proposal", "lifecycle"
    }  # fmt: skip
