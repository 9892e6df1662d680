"""A state loaded beside its stored tree (State.use_tree) keeps the root without rebuilding it; a state rebuilt from
its tree's leaves and its proposals' stake positions (State.from_records) is the state; stored nodes check against
their hashes (tree.node_hash). The node's SQLite side is tests/node/test_treestore.py."""

from __future__ import annotations

import pytest

from protocol import codec, crypto
from protocol.economics.emission import UNIT
from protocol.errors import StateError
from protocol.messages import AddStake, Propose, ServeAxon, SetWeights, Transfer, Vote
from protocol.state import keys
from protocol.state.keys import Family
from protocol.state.state import State
from protocol.state.transition import apply_commit
from protocol.state.tree import MemoryStore, Tree, TreeError, encode_leaf, node_hash
from tests.protocol.state.test_state import Chain
from tests.protocol.state.test_state_root import A, B, M, rich_chain


def richer_chain() -> Chain:
    """rich_chain plus what only from_records must put back together: a second proposal whose tally emptied its stake
    positions, an unrevealed weight commit (it lives in its neuron's record) and a jail record on a hotkey."""
    c = rich_chain()
    c.ok(A, Propose("max_subnets", 6, "more"))
    st = c.state
    tallied = st.governance.proposals[2]
    tallied.snapshot, tallied.votes, tallied.status = {}, {}, "rejected"  # what a tally leaves
    st.changed_proposal(2)
    st.subnets[1].commits[M.public] = [(b"\x05" * 32, 0, st.height)]
    return c


def positions_of(st: State) -> dict[bytes, bytes]:
    return {d: st.encoded_positions(pid) for d, pid in st.positions().items()}


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


def test_a_state_rebuilt_from_its_tree_records_is_the_state_and_commits_in_step() -> None:
    c = richer_chain()
    st = c.state
    root = st.root()
    assert {keys.parse(k)[0] for k in st.all_keys()} == set(Family)
    positions = positions_of(st)
    assert len(positions) == 1  # the proposal still voting; the tallied one names the digest of no positions
    items = sorted(st.tree.items(), key=lambda kv: crypto.digest(kv[1]))  # any order: the state does not depend on it
    rebuilt = State.from_records(items, positions)
    assert rebuilt.snapshot() == st.snapshot()
    assert rebuilt.root() == root  # built from nothing in its own tree
    assert rebuilt.hotkey_stake == st.hotkey_stake and rebuilt.subnets[1].uid_of == st.subnets[1].uid_of

    txs = [c.tx(A, Transfer(B.public, 3)), c.tx(B, AddStake(M.public, UNIT)), c.tx(M, ServeAxon(1, "12D3KooWz", ())),
           c.tx(M, SetWeights(1, (0,), (1,), 0)), c.tx(A, Vote(1, 0))]
    for raw in txs:  # the same commits on both: the same roots
        h = st.height + 1
        assert [r.ok for r in apply_commit(st, h, [raw])] == [r.ok for r in apply_commit(rebuilt, h, [raw])]
        assert rebuilt.root() == st.root()
    assert rebuilt.snapshot() == st.snapshot() and rebuilt.root() == rebuilt.rebuild_root()


def test_from_records_on_its_stored_tree_encodes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a node does at start-up: the state from the stored tree's leaves, then that tree taken as it is."""
    st = richer_chain().state
    root = st.root()
    stored = MemoryStore()
    stored.nodes = dict(st.tree.store.nodes)
    rebuilt = State.from_records(Tree(stored, root).items(), positions_of(st))
    encoded: list[bytes] = []
    original = State.value_of
    monkeypatch.setattr(State, "value_of", lambda self, key: encoded.append(key) or original(self, key))
    rebuilt.use_tree(stored, root)
    assert rebuilt.root() == root and encoded == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda items, pos: (items, {}), "stake positions .* are missing"),
        (lambda items, pos: (items, {d: v + b"\x00" for d, v in pos.items()}), "stake positions .* are damaged"),
        (lambda items, pos: ({k: v for k, v in items.items() if k != keys.global_("epoch")}, pos), "global records"),
        (lambda items, pos: (items | {keys.neuron(1, 7): items[keys.neuron(1, 0)]}, pos), "beyond their subnet"),
        (lambda items, pos: (items | {keys.escrow(9): items[keys.escrow(1)]}, pos), "under id 9 holds escrow_id 1"),
        (lambda items, pos: (items | {keys.account(A.public): codec.encode("x")}, pos), "amount record holds str"),
        (lambda items, pos: (items | {keys.nonce(A.public): b"\x18\x05"}, pos), "make no state: .*Error"),
        (lambda items, pos: (items | {keys.lifecycle(5): items[keys.lifecycle(0)]}, pos), "KeyError"),
        (lambda items, pos: (items | {b"\x63junk": b"\x00"}, pos), "unknown key family"),
    ],
)
def test_records_that_make_no_state_are_refused_by_name(change, message: str) -> None:
    st = richer_chain().state
    st.root()
    items, positions = change(dict(st.tree.items()), positions_of(st))
    with pytest.raises(StateError, match=message):
        State.from_records(items.items(), positions)
