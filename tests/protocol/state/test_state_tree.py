"""The authenticated state tree (spec/state-tree.md): incremental roots equal the definition, proofs bind.

The roots are checked against `reference_root`, the spec's recursive definition written out plainly, and against
spec/vectors/state_tree.json (regenerate with `python -m tests.protocol.state.gen_state_tree_vectors` after a
deliberate change).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import crypto, proof
from protocol.proof import EMPTY, Proof, ProofError
from protocol.state import keys
from protocol.state.keys import BadKeyError, Family
from protocol.state.tree import MemoryStore, Tree, TreeError
from tests.protocol.state.gen_state_tree_vectors import build, reference_root

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "spec" / "vectors" / "state_tree.json").read_text())
REGEN = "tree hashing or key layout changed? regenerate, review: python -m tests.protocol.state.gen_state_tree_vectors"

# Short keys collide in their first path bits often enough to exercise deep shared prefixes and re-compression.
key_st = st.binary(min_size=1, max_size=3)
value_st = st.binary(max_size=6)
map_st = st.dictionaries(key_st, value_st, max_size=40)


def fresh(entries: dict[bytes, bytes]) -> Tree:
    tree = Tree(MemoryStore())
    tree.update(entries)
    return tree


# --- test vectors ---------------------------------------------------------------------------------------


def test_vectors_are_what_the_generator_writes():
    assert build() == VECTORS, REGEN


def test_vector_keys_cover_every_family_and_parse_back():
    assert sorted(k["family"] for k in VECTORS["keys"]) == sorted(f.name.lower() for f in Family)
    for k in VECTORS["keys"]:
        family, fields = keys.parse(bytes.fromhex(k["key"]))
        assert family.name.lower() == k["family"]
        assert [f.hex() if type(f) is bytes else f for f in fields] == k["fields"], REGEN


@pytest.mark.parametrize("m", VECTORS["maps"], ids=[m["name"] for m in VECTORS["maps"]])
def test_vector_roots(m):
    entries = {bytes.fromhex(k): bytes.fromhex(v) for k, v in m["entries"]}
    assert reference_root(entries).hex() == m["root"], REGEN
    assert fresh(entries).root.hex() == m["root"]
    one_by_one = Tree(MemoryStore())
    for k in reversed(list(entries)):
        one_by_one.update({k: entries[k]})
    assert one_by_one.root.hex() == m["root"]


@pytest.mark.parametrize("case", VECTORS["proofs"]["cases"], ids=[c["key"][:20] for c in VECTORS["proofs"]["cases"]])
def test_vector_proofs_verify_and_reject_tampering(case):
    root = bytes.fromhex(VECTORS["proofs"]["root"])
    key, pf = bytes.fromhex(case["key"]), Proof.from_bytes(bytes.fromhex(case["proof"]))
    value = None if case["value"] is None else bytes.fromhex(case["value"])
    proof.verify(root, key, value, pf)
    assert Proof.from_bytes(pf.to_bytes()) == pf
    with pytest.raises(ProofError):
        proof.verify(crypto.digest(b"another root"), key, value, pf)
    with pytest.raises(ProofError):  # claim the other answer: a made-up value, or absence of a present key
        proof.verify(root, key, b"forged" if value is None else None, pf)
    if value is not None:
        with pytest.raises(ProofError, match="value does not match"):
            proof.verify(root, key, value + b"\x00", pf)
    data = pf.to_bytes()
    for i in range(len(data)):  # one flipped bit anywhere: the proof no longer parses, or no longer verifies
        tampered = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]
        with pytest.raises(ProofError):
            proof.verify(root, key, value, Proof.from_bytes(tampered))


def test_vectors_show_both_kinds_of_absence_and_every_family_present():
    cases = VECTORS["proofs"]["cases"]
    absent = [Proof.from_bytes(bytes.fromhex(c["proof"])) for c in cases if c["value"] is None]
    assert {p.leaf is None for p in absent} == {True, False}
    present = {keys.parse(bytes.fromhex(c["key"]))[0] for c in cases if c["value"] is not None}
    assert present == set(Family)


# --- properties -----------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(map_st, st.randoms(use_true_random=False))
def test_root_is_the_definition_in_any_insertion_order(entries, rnd):
    want = reference_root(entries)
    assert fresh(entries).root == want
    order = list(entries)
    rnd.shuffle(order)
    tree = Tree(MemoryStore())
    while order:  # random batch sizes, random order
        n = rnd.randint(1, 5)
        tree.update({k: entries[k] for k in order[:n]})
        order = order[n:]
    assert tree.root == want
    listed = list(tree.items())
    assert dict(listed) == entries and [crypto.digest(k) for k, _ in listed] == sorted(map(crypto.digest, entries))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(key_st, st.none() | value_st, max_size=12), max_size=8))
def test_batches_with_deletes_match_the_map(batches):
    tree, model = Tree(MemoryStore()), {}
    for batch in batches:
        tree.update(batch)
        for k, v in batch.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert tree.root == reference_root(model)  # deletion re-compresses to the shape of the smaller map
    assert dict(tree.items()) == model


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(key_st, st.none() | value_st, max_size=12), max_size=8))
def test_a_tree_without_history_stores_exactly_its_current_nodes(batches):
    tree, model = Tree(MemoryStore(), history=False), {}
    for batch in batches:
        tree.update(batch)
        model = {k: v for k, v in {**model, **batch}.items() if v is not None}
        assert tree.store.nodes == fresh(model).store.nodes  # nothing replaced is left, nothing current is gone
        for key in list(model)[:3]:
            proof.verify(tree.root, key, model[key], tree.prove(key)[1])


def test_a_failed_update_deletes_nothing():
    tree = Tree(MemoryStore(), history=False)
    tree.update({b"a": b"1", b"b": b"2"})
    nodes, root = set(tree.store.nodes), tree.root
    lost = tree.prove(b"a")[1].siblings[0]
    del tree.store.nodes[lost]  # a node this update will need
    with pytest.raises(TreeError):
        tree.update({b"a": b"3", b"c": b"4", b"b": b"5"})
    assert tree.root == root and nodes - {lost} <= set(tree.store.nodes)  # the old tree is intact
    tree.store.nodes[lost] = fresh({b"a": b"1", b"b": b"2"}).store.nodes[lost]
    tree.update({b"c": b"4"})  # the failed update's bookkeeping must not leak into this one
    assert tree.store.nodes == fresh({b"a": b"1", b"b": b"2", b"c": b"4"}).store.nodes


@settings(max_examples=100, deadline=None)
@given(map_st, st.lists(key_st, max_size=6))
def test_proofs_for_present_and_absent_keys(entries, probes):
    tree = fresh(entries)
    for key in list(entries)[:6] + probes:
        value, pf = tree.prove(key)
        assert value == entries.get(key) == tree.get(key)
        proof.verify(tree.root, key, value, Proof.from_bytes(pf.to_bytes()))
        with pytest.raises(ProofError):
            proof.verify(tree.root, key, b"x" if value is None else value + b"x", pf)
        if tree.root != EMPTY:
            with pytest.raises(ProofError):
                proof.verify(reference_root({**entries, b"\xff\xff\xff\xff": b""}), key, value, pf)


def test_a_long_shared_prefix_is_a_chain_that_collapses_on_delete():
    """Two keys whose paths share 12+ bits hang below a chain of one-sided internal nodes; deleting one folds the
    chain back into the other's leaf, and a third key off the chain still proves."""
    seen: dict[int, bytes] = {}
    for i in range(1 << 16):
        k = b"p%d" % i
        top = int.from_bytes(crypto.digest(k)[:2], "big") >> 4
        if top in seen:
            a, b = seen[top], k
            break
        seen[top] = k
    tree = fresh({a: b"A", b: b"B", b"c": b"C"})
    assert tree.root == reference_root({a: b"A", b: b"B", b"c": b"C"})
    assert len(tree.prove(a)[1].siblings) >= 12
    tree.update({b: None})
    assert tree.root == reference_root({a: b"A", b"c": b"C"})
    assert len(tree.prove(a)[1].siblings) < 12
    for key, value in ((a, b"A"), (b, None), (b"c", b"C")):
        proof.verify(tree.root, key, value, tree.prove(key)[1])


def test_past_roots_stay_readable_from_the_same_store():
    tree = fresh({b"a": b"1", b"b": b"2"})
    old = tree.root
    tree.update({b"a": b"3", b"b": None})
    assert Tree(tree.store, old).get(b"a") == b"1" and Tree(tree.store, old).get(b"b") == b"2"
    assert tree.get(b"a") == b"3" and tree.get(b"b") is None


def test_an_update_that_changes_nothing_keeps_the_root():
    tree = fresh({b"a": b"1", b"b": b"2"})
    root = tree.root
    assert tree.update({b"a": b"1", b"zz": None}) == root
    assert tree.update({}) == root


def test_the_empty_value_is_present_not_absent():
    tree = fresh({b"k": b""})
    assert tree.root != EMPTY and tree.get(b"k") == b""
    value, pf = tree.prove(b"k")
    proof.verify(tree.root, b"k", b"", pf)
    with pytest.raises(ProofError, match="key present"):
        proof.verify(tree.root, b"k", None, pf)


# --- rejections -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"", "k", bytearray(b"k"), b"x" * 0x10000, None])
def test_tree_rejects_a_bad_key(bad):
    with pytest.raises(TreeError, match="a key is 1 to 65535 bytes"):
        Tree(MemoryStore()).get(bad)
    if not isinstance(bad, bytearray):  # a bytearray cannot even be a dict key
        with pytest.raises(TreeError, match="a key is 1 to 65535 bytes"):
            Tree(MemoryStore()).update({bad: b"v"})


def test_tree_rejects_a_bad_value():
    with pytest.raises(TreeError, match="a value is bytes or None"):
        Tree(MemoryStore()).update({b"k": 5})


def test_a_store_missing_a_node_is_a_clear_error():
    tree = fresh({b"a": b"1", b"b": b"2"})
    with pytest.raises(TreeError, match="lacks node"):
        Tree(MemoryStore(), tree.root).get(b"a")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "non-empty"),
        (b"\x02", "starts with"),
        (b"\x00" + bytes(31), "siblings"),
        (b"\x01" + bytes(63), "siblings"),
        (b"\x00" + bytes(32 * 257), "at most 256"),
    ],
)
def test_malformed_proof_bytes_are_rejected(data, match):
    with pytest.raises(ProofError, match=match):
        Proof.from_bytes(data)


def test_verify_rejects_bad_arguments():
    tree = fresh({b"a": b"1", b"b": b"2"})
    _, pf = tree.prove(b"a")
    for root, key, value, match in [
        (tree.root[:31], b"a", b"1", "root is 32 bytes"),
        (tree.root, b"", b"1", "key is 1 to"),
        (tree.root, b"a", "1", "value is bytes"),
    ]:
        with pytest.raises(ProofError, match=match):
            proof.verify(root, key, value, pf)
    with pytest.raises(ProofError, match="siblings of 32 bytes"):
        proof.verify(tree.root, b"a", b"1", Proof((b"short",), pf.leaf))
    _, other = tree.prove(b"b")
    with pytest.raises(ProofError):  # b's proof says nothing about a
        proof.verify(tree.root, b"a", b"1", other)


def test_proof_module_stands_alone():
    """A light client imports protocol.proof without the codec, signatures or state."""
    code = (
        "import sys, protocol.proof\n"
        "heavy = [m for m in ('protocol.codec', 'protocol.crypto', 'protocol.state', 'nacl', 'cbor2', 'numpy')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
    assert proof.h(b"x") == crypto.digest(b"x")


# --- typed keys -----------------------------------------------------------------------------------------

pk = st.binary(min_size=32, max_size=32)
u64 = st.integers(0, 2**64 - 1)
any_key = st.one_of(
    st.builds(keys.account, pk),
    st.builds(keys.nonce, pk),
    st.builds(keys.stake, pk, pk),
    st.builds(keys.hotkey, pk),
    st.builds(keys.subnet, u64),
    st.builds(keys.neuron, u64, u64),
    st.builds(keys.escrow, u64),
    st.builds(keys.proposal, u64),
    st.builds(keys.lifecycle, u64),
    st.builds(keys.global_, st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)),
)


@settings(max_examples=200)
@given(any_key, any_key)
def test_keys_parse_back_and_never_collide(a, b):
    """The layout is injective: equal keys only from equal (family, fields)."""
    assert (a == b) == (keys.parse(a) == keys.parse(b))
    family, fields = keys.parse(a)
    rebuilt = keys.global_(*fields) if family is Family.GLOBAL else getattr(keys, family.name.lower())(*fields)
    assert rebuilt == a


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: keys.account(b"short"), "public key is 32 bytes"),
        (lambda: keys.stake(bytes(32), "cold"), "public key is 32 bytes"),
        (lambda: keys.neuron(1, -1), r"\[0, 2\^64\)"),
        (lambda: keys.subnet(2**64), r"\[0, 2\^64\)"),
        (lambda: keys.escrow(True), r"\[0, 2\^64\)"),
        (lambda: keys.global_("Epoch"), "global key"),
        (lambda: keys.global_(""), "global key"),
        (lambda: keys.global_("x" * 33), "global key"),
        (lambda: keys.global_("épo"), "global key"),
        (lambda: keys.parse(b""), "non-empty"),
        (lambda: keys.parse(b"\x63"), "unknown key family"),
        (lambda: keys.parse(keys.subnet(1) + b"\x00"), "9 bytes, got 10"),
        (lambda: keys.parse(b"\x00Epoch"), "global key"),
    ],
)
def test_bad_keys_are_rejected(make, match):
    with pytest.raises(BadKeyError, match=match):
        make()
