"""Regenerate spec/vectors/state_root.json: `python -m tests.protocol.state.gen_state_root_vectors` (deterministic).

The state of `rich_chain` (a record in every family, built by signed transactions from fixed keys) as the map the
state root is taken over (spec/state.md §9.1): each typed key, its value bytes and the value decoded (byte strings
as "0x" hex), and the root by the tree's recursive definition (`reference_root`, spec/state-tree.md §2). Another
implementation that encodes these records under these keys gets this root. A deliberate change of the key/value
table changes this file: regenerate it and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol import codec
from protocol.state import keys
from tests.protocol.state.gen_state_tree_vectors import reference_root
from tests.protocol.state.test_state_root import rich_chain

OUT = Path(__file__).resolve().parents[3] / "spec" / "vectors" / "state_root.json"


def _plain(o: Any) -> Any:
    if type(o) is bytes:
        return "0x" + o.hex()
    if type(o) is list:
        return [_plain(x) for x in o]
    if type(o) is dict:
        return {k: _plain(v) for k, v in sorted(o.items())}
    return o


def build() -> dict:
    st = rich_chain().state
    entries = {k: st.value_of(k) for k in sorted(st.all_keys())}
    records = []
    for k, v in entries.items():
        family, fields = keys.parse(k)
        records.append(
            {"family": family.name.lower(), "fields": _plain(list(fields)), "key": k.hex(), "value": v.hex(),
             "decoded": _plain(codec.decode(v))}
        )  # fmt: skip
    return {
        "description": "the state root of a small state (spec/state.md §9.1): records in key order, then the root",
        "records": records,
        "root": reference_root(entries).hex(),
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
