"""Regenerate spec/vectors/state_tree.json: `python -m tests.protocol.state.gen_state_tree_vectors` (deterministic).

Roots come from `reference_root`, the recursive definition in spec/state-tree.md §2 written out plainly (it never
touches protocol/state/tree.py), so the file states the definition and
tests/protocol/state/test_state_tree.py checks the
incremental tree against it. Proofs come from the tree and are refused here unless protocol.proof accepts them.
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol import codec, crypto, proof
from protocol.state import keys
from protocol.state.tree import MemoryStore, Tree

OUT = Path(__file__).resolve().parents[3] / "spec" / "vectors" / "state_tree.json"


def reference_root(entries: dict[bytes, bytes], depth: int = 0) -> bytes:
    """The root by definition: EMPTY for no leaf, the leaf for one, else H(0x01 || root(bit 0) || root(bit 1))."""
    if not entries:
        return proof.EMPTY
    if len(entries) == 1:
        ((k, v),) = entries.items()
        return crypto.digest(b"\x00" + crypto.digest(k) + crypto.digest(v))
    halves: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
    for k, v in entries.items():
        p = crypto.digest(k)
        halves[(p[depth // 8] >> (7 - depth % 8)) & 1][k] = v
    return crypto.digest(b"\x01" + reference_root(halves[0], depth + 1) + reference_root(halves[1], depth + 1))


def _pk(label: str) -> bytes:
    return crypto.digest(label.encode())


# One key per family, with the fields that built it (public keys as hex in the file).
KEYS: list[tuple[str, tuple[bytes | int | str, ...], bytes]] = [
    ("global", ("epoch",), keys.global_("epoch")),
    ("account", (_pk("alice"),), keys.account(_pk("alice"))),
    ("nonce", (_pk("alice"),), keys.nonce(_pk("alice"))),
    ("stake", (_pk("hot"), _pk("alice")), keys.stake(_pk("hot"), _pk("alice"))),
    ("hotkey", (_pk("hot"),), keys.hotkey(_pk("hot"))),
    ("subnet", (1,), keys.subnet(1)),
    ("neuron", (1, 7), keys.neuron(1, 7)),
    ("escrow", (3,), keys.escrow(3)),
    ("proposal", (2,), keys.proposal(2)),
    ("lifecycle", (0,), keys.lifecycle(0)),
]

# Values are canonical CBOR, as the state will store them; any bytes would do for the tree.
STATE = {key: codec.encode([name, i * 1000 + 1]) for i, (name, _, key) in enumerate(KEYS)}
ABSENT = [keys.account(_pk("bob")), keys.neuron(1, 8), keys.global_("supply"), keys.escrow(4)]


def _absent_at_empty(tree: Tree) -> bytes:
    """The first escrow id whose walk ends in an empty subtree, so the vectors show both kinds of absence."""
    return next(k for k in map(keys.escrow, range(5, 1000)) if tree.prove(k)[1].leaf is None)


def _maps() -> list[tuple[str, dict[bytes, bytes]]]:
    items = list(STATE.items())
    return [
        ("empty", {}),
        ("one", dict(items[1:2])),
        ("two", dict(items[1:3])),
        ("three", dict(items[:3])),
        ("all-families", dict(items)),
        ("all-but-account-and-neuron", {k: v for k, v in items if k not in (items[1][0], items[6][0])}),
        ("empty-value", {keys.global_("epoch"): b""}),
    ]


def _field(f: bytes | int | str) -> str | int:
    return f.hex() if type(f) is bytes else f


def build() -> dict:
    tree = Tree(MemoryStore())
    tree.update(STATE)
    root = tree.root
    proofs = []
    for key in [k for _, _, k in KEYS] + ABSENT + [_absent_at_empty(tree)]:
        value, pf = tree.prove(key)
        proof.verify(root, key, value, pf)  # refuse to write a vector the verifier rejects
        proofs.append({"key": key.hex(), "value": None if value is None else value.hex(), "proof": pf.to_bytes().hex()})
    return {
        "doc": "spec/state-tree.md; regenerate: python -m tests.protocol.state.gen_state_tree_vectors; review the diff",
        "keys": [{"family": n, "fields": [_field(f) for f in fields], "key": key.hex()} for n, fields, key in KEYS],
        "maps": [
            {"name": n, "entries": [[k.hex(), v.hex()] for k, v in sorted(m.items())], "root": reference_root(m).hex()}
            for n, m in _maps()
        ],
        "proofs": {"map": "all-families", "root": root.hex(), "cases": proofs},
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
