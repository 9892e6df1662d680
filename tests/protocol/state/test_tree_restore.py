"""A state loaded beside its stored tree (State.use_tree) keeps the root without rebuilding it; stored nodes check
against their hashes (tree.node_hash). The node's SQLite side is tests/node/test_treestore.py."""

from __future__ import annotations

import pytest

from protocol.economics.emission import UNIT
from protocol.errors import StateError
from protocol.messages import AddStake, ServeAxon, SetWeights, Transfer
from protocol.state.state import State
from protocol.state.transition import apply_commit
from protocol.state.tree import MemoryStore, Tree, TreeError, encode_leaf, node_hash
from tests.protocol.state.test_state_root import A, B, M, rich_chain


def test_a_loaded_state_takes_its_stored_tree_and_keeps_committing_in_step(monkeypatch: pytest.MonkeyPatch) -> None:
    c = rich_chain()  # a record in every family: subnets, neurons, escrows, proposals, lifecycle, offences
    st = c.state
    root = st.root()
    stored = MemoryStore()
    stored.nodes = dict(st.tree.store.nodes)
    loaded = State.load(st.snapshot())
    encoded: list[bytes] = []
    original = State.value_of
    monkeypatch.setattr(State, "value_of", lambda self, key: encoded.append(key) or original(self, key))
    loaded.use_tree(stored, root)
    assert loaded.root() == root and encoded == []  # nothing re-encoded: no build from nothing
    monkeypatch.undo()

    txs = [c.tx(A, Transfer(B.public, 3)), c.tx(B, AddStake(M.public, UNIT)), c.tx(M, ServeAxon(1, "12D3KooWz", ())),
           c.tx(M, SetWeights(1, (0,), (1,), 0))]
    for raw in txs:  # the same commits on the original and on the loaded state: the same roots
        h = st.height + 1
        apply_commit(st, h, [raw])
        apply_commit(loaded, h, [raw])
        assert loaded.root() == st.root()
    assert loaded.root() == loaded.rebuild_root()
    assert stored.nodes == st.tree.store.nodes  # the stored tree went on holding exactly the current one


def test_use_tree_comes_before_the_first_root() -> None:
    st = rich_chain().state
    st.root()
    with pytest.raises(StateError, match="already built"):
        st.use_tree(MemoryStore())


def test_a_state_on_an_empty_store_builds_its_tree_there() -> None:
    st = rich_chain().state
    root = st.root()
    loaded = State.load(st.snapshot())
    store = MemoryStore()
    loaded.use_tree(store)
    assert loaded.root() == root and store.nodes == st.tree.store.nodes


def test_node_hash_is_the_name_a_node_is_stored_under() -> None:
    tree = Tree(MemoryStore())
    tree.update({b"a": b"1", b"b": b"", b"c": b"3"})
    assert all(node_hash(node) == h for h, node in tree.store.nodes.items())
    leaf = encode_leaf(b"a", b"1")
    for junk in (b"", b"\x02" + bytes(64), b"\x01" + bytes(63), b"\x00\x00", leaf[:3], b"\x00\x00\x00rest"):
        with pytest.raises(TreeError, match="no stored tree node"):
            node_hash(junk)
