"""The state root is the state tree's root (spec/state.md §9): every family of records is under it, it is updated
from the written keys alone and equals a tree built from nothing, and `State.prove` answers with proofs that bind."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable

import pytest

from protocol import codec, crypto, proof
from protocol.economics.emission import UNIT
from protocol.messages import AddStake, OpenEscrow, Propose, Register, ServeAxon, SetWeights, Transfer
from protocol.proof import Proof, ProofError
from protocol.state import keys
from protocol.state.genesis import Endpoint
from protocol.state.keys import BadKeyError, Family
from protocol.state.lifecycle import Deregistration
from protocol.state.state import GLOBALS, CommitteeMember, Neuron, State
from protocol.state.transition import apply_commit
from protocol.state.tree import MemoryStore, Tree
from tests.protocol.state.test_state import KEYS, OWNER, VAL, Chain, make_chain, registered

A, B, M = KEYS[3], KEYS[4], KEYS[5]


def rich_chain() -> Chain:
    """A chain with a record in every family: accounts, nonces, stakes, hotkeys, a subnet with neurons, an escrow,
    a proposal, a deregistration record and an offence."""
    c = make_chain({"tempo": 1000, "commit_reveal_enabled": 0})
    registered(c, [M])
    c.ok(A, AddStake(M.public, 5 * UNIT))
    c.ok(A, OpenEscrow(1, 2 * UNIT, c.state.height + 50))
    c.ok(B, Propose("max_subnets", 5, "fewer"))
    st = c.state
    st.lifecycle.history.append(Deregistration(9, "gone", OWNER.public, 0, 1, OWNER.public, 0, 0, 0, 0, 0, 0, 0))
    st.offences.add((0, VAL.public))
    st.jailed[VAL.public] = 0
    return c


def family_of(key: bytes) -> Family:
    return keys.parse(key)[0]


def test_every_family_holds_a_record_and_proves_it():
    st = rich_chain().state
    root = st.root()
    assert root == st.rebuild_root()
    present = list(st.all_keys())
    assert {family_of(k) for k in present} == set(Family)
    assert {keys.parse(k)[1][0] for k in present if family_of(k) is Family.GLOBAL} == set(GLOBALS)
    for k in present:
        value, p = st.prove(k)
        assert value is not None and value == st.value_of(k)
        proof.verify(root, k, value, Proof.from_bytes(p.to_bytes()))  # one proof per key type, via its bytes


def test_values_are_the_records_canonical_cbor():
    c = rich_chain()
    st = c.state
    assert codec.decode(st.value_of(keys.account(A.public))) == st.balances[A.public]
    assert codec.decode(st.value_of(keys.nonce(A.public))) == st.nonces[A.public]
    assert codec.decode(st.value_of(keys.stake(M.public, A.public))) == 5 * UNIT
    owner, ep, jailed = codec.decode(st.value_of(keys.hotkey(VAL.public)))
    assert (owner, ep, jailed) == (VAL.public, [VAL_EP.peer_id, list(VAL_EP.multiaddrs)], 0)
    sub = codec.decode(st.value_of(keys.subnet(1)))
    assert sub[0] == 1 and sub[6] == 1 and sub[-1] == st.lifecycle.scores[1]  # netuid, neuron count, score
    nr = codec.decode(st.value_of(keys.neuron(1, 0)))
    assert nr[0] == M.public and nr[-1] == []  # hotkey first, commits last
    assert codec.decode(st.value_of(keys.global_("height"))) == st.height
    assert codec.decode(st.value_of(keys.global_("supply"))) == [st.issued, st.burned, st.fees_burned]
    assert st.value_of(keys.neuron(1, 1)) is None and st.value_of(keys.global_("nothing")) is None
    prop = codec.decode(st.value_of(keys.proposal(1)))  # the stake snapshot stands as its digest
    snapshot = [[c, h, a] for (c, h), a in sorted(st.stakes.items())]
    assert prop[7] == crypto.digest(codec.encode(snapshot)) and len(snapshot) == 2
    st.governance.proposals[1].snapshot = {}  # what the tally does
    assert codec.decode(st.value_of(keys.proposal(1)))[7] == crypto.digest(codec.encode([]))


VAL_EP = Endpoint("12D3KooWAbc", ("/ip4/127.0.0.1/tcp/4001",))


def _neuron(st: State) -> Neuron:
    return st.subnets[1].neurons[0]


# One write per piece of state, each through the container or object it lives in (handlers write the same way).
MUTATIONS: dict[str, Callable[[State], None]] = {
    "balance": lambda st: st.credit(A.public, 1),
    "balance removed": lambda st: st.debit(A.public, st.balances[A.public]),
    "nonce": lambda st: st.nonces.__setitem__(A.public, 99),
    "stake": lambda st: st.add_stake(A.public, M.public, 1),
    "stake removed": lambda st: st.sub_stake(A.public, M.public, 5 * UNIT),
    "hotkey owner": lambda st: st.claim_hotkey(B.public, A.public),
    "hotkey endpoint": lambda st: st.endpoints.__setitem__(M.public, Endpoint("12D3KooWx", ("/ip4/1.2.3.4/tcp/1",))),
    "hotkey jailed": lambda st: st.jailed.__setitem__(M.public, 3),
    "subnet field": lambda st: setattr(st.subnets[1], "burn", st.subnets[1].burn + 1),
    "subnet hyperparameters": lambda st: setattr(
        st.subnets[1], "hp", st.subnets[1].hp.with_value("kappa", 1, n_uids=1)
    ),
    "subnet score": lambda st: st.lifecycle.scores.__setitem__(1, 12345),
    "subnet removed": lambda st: st.subnets.pop(1) and st.lifecycle.scores.pop(1),
    "neuron field": lambda st: setattr(_neuron(st), "weights", ((0, 65535),)),
    "neuron replaced": lambda st: st.subnets[1].neurons.__setitem__(0, Neuron(B.public, A.public, 7)),
    "neuron added": lambda st: st.subnets[1].neurons.append(Neuron(B.public, A.public, 7)),
    "neuron commits": lambda st: st.subnets[1].commits.__setitem__(M.public, [(bytes(32), 0, 1)]),
    "escrow changed": lambda st: (setattr(st.escrows.open[1], "claimed", 1), st.changed_escrow(1)),
    "escrow closed": lambda st: st.escrows.open.pop(1),
    "proposal changed": lambda st: (setattr(st.governance.proposals[1], "yes", 1), st.changed_proposal(1)),
    "proposal removed": lambda st: st.governance.proposals.pop(1),
    "deregistration": lambda st: st.lifecycle.history.append(st.lifecycle.history[0]),
    "height": lambda st: setattr(st, "height", st.height + 1),
    "issued": lambda st: setattr(st, "issued", st.issued + 1),
    "burned": lambda st: setattr(st, "burned", st.burned + 1),
    "fees burned": lambda st: setattr(st, "fees_burned", st.fees_burned + 1),
    "subnet price": lambda st: setattr(st, "subnet_last_height", 5),
    "params": lambda st: setattr(st, "params", dataclasses.replace(st.params, max_subnets=3)),
    "epoch": lambda st: setattr(st, "epoch", st.epoch + 1),
    "committee": lambda st: setattr(st, "epoch_committee", (CommitteeMember(A.public, 1, "p", ()),)),
    "epoch seed": lambda st: setattr(st, "epoch_seed", bytes(32)),
    "offence": lambda st: st.offences.add((1, M.public)),
    "escrow next id": lambda st: setattr(st.escrows, "next_id", st.escrows.next_id + 1),
    "proposal next id": lambda st: setattr(st.governance, "next_id", st.governance.next_id + 1),
    "default hyperparameters": lambda st: setattr(
        st.governance, "default_hp", st.governance.default_hp.with_value("kappa", 7, n_uids=0)
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_piece_of_state_moves_the_root(name):
    st = rich_chain().state
    before = st.root()
    MUTATIONS[name](st)
    after = st.root()
    assert after != before, f"{name} is not under the state root"
    assert after == st.rebuild_root(), f"{name}: the incremental root missed the write"


def test_root_after_many_commits_without_roots_equals_rebuilt():
    c = rich_chain()
    st = c.state
    st.root()
    raws = [c.tx(A, Transfer(B.public, 3)), c.tx(B, AddStake(M.public, UNIT)), c.tx(M, ServeAxon(1, "12D3KooWz", ()))]
    for raw in raws:  # three heights, no root in between: the writes accumulate until the next root
        apply_commit(st, st.height + 1, [raw])
    apply_commit(st, st.height + 1, [c.tx(M, SetWeights(1, (0,), (1,), 0))])
    assert st.root() == st.rebuild_root()


def test_absent_keys_prove_absent_and_tampering_is_refused():
    st = rich_chain().state
    root = st.root()
    nobody = keys.account(bytes(range(32)))
    value, p = st.prove(nobody)
    assert value is None
    proof.verify(root, nobody, None, p)
    with pytest.raises(ProofError):
        proof.verify(root, nobody, codec.encode(1), p)
    k = keys.account(A.public)
    value, p = st.prove(k)
    with pytest.raises(ProofError, match="does not match"):
        proof.verify(root, k, codec.encode(codec.decode(value) + 1), p)  # a wrong balance
    bad = Proof((bytes(32),) + p.siblings[1:], p.leaf) if p.siblings else Proof((), (p.leaf[0], bytes(32)))
    with pytest.raises(ProofError):
        proof.verify(root, k, value, bad)  # a tampered path
    with pytest.raises(ProofError, match="root"):
        proof.verify(bytes(32), k, value, p)  # another root
    with pytest.raises(BadKeyError):
        st.prove(b"\x01short")


def test_load_rebuilds_the_same_tree_and_copies_are_independent():
    c = rich_chain()
    st = c.state
    root = st.root()
    loaded = State.load(st.snapshot())
    assert loaded.root() == root and loaded.prove(keys.account(A.public)) == st.prove(keys.account(A.public))
    twin = copy.deepcopy(st)  # what the fuzz targets do
    twin.credit(A.public, 1)
    assert twin.root() != root and st.root() == root and twin.root() == twin.rebuild_root()
    st.credit(B.public, 1)  # a write not yet under the root travels with a copy or a pickle
    for other in (copy.deepcopy(st), pickle.loads(pickle.dumps(st))):
        assert other.root() == st.root() == st.rebuild_root() != root


def test_the_tree_keeps_only_the_current_version():
    c = rich_chain()
    for i in range(20):
        c.ok(A, Transfer(KEYS[i % 12].public, i + 1))
    st = c.state
    fresh = Tree(MemoryStore())
    fresh.update({k: st.value_of(k) for k in st.all_keys()})
    assert st.root() == fresh.root
    assert st.tree.store.nodes == fresh.store.nodes  # nothing of the replaced versions is left behind


def test_register_then_prune_keeps_neuron_keys_in_step():
    c = make_chain({"max_allowed_uids": 2, "immunity_period": 0, "tempo": 1000})
    registered(c, [KEYS[3], KEYS[4]])
    c.ok(KEYS[5], Register(1, KEYS[5].public, 100 * UNIT))  # replaces a uid: the same key, a new neuron
    st = c.state
    hotkeys = {codec.decode(st.value_of(keys.neuron(1, uid)))[0] for uid in (0, 1)}
    assert KEYS[5].public in hotkeys and st.value_of(keys.neuron(1, 2)) is None
