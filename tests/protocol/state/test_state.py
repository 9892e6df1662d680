"""Unit tests of the chain state machine: one test per rule, messages checked for their values."""

from __future__ import annotations

import pytest

from protocol.crypto import Keypair
from protocol.economics.emission import UNIT, apportion
from protocol.economics.pricing import decayed_burn
from protocol.economics.weights import weights_commit_hash
from protocol.errors import StateError, TxRejected
from protocol.messages import (
    AddStake,
    CommitWeights,
    CreateSubnet,
    Register,
    RemoveStake,
    RevealWeights,
    ServeAxon,
    SetHyperparameter,
    SetWeights,
    SignedTransaction,
    Transaction,
    Transfer,
)
from protocol.state.genesis import Endpoint, build_genesis
from protocol.state.state import State, epoch_due, next_epoch_height
from protocol.state.transition import Receipt, apply_commit, check_tx

CHAIN = "test-chain"
KEYS = [Keypair(bytes([i + 1]) * 32) for i in range(12)]
VAL, OWNER = KEYS[0], KEYS[1]
EP = Endpoint("12D3KooWAbc", ("/ip4/127.0.0.1/tcp/4001",))


class Chain:
    """A State plus a nonce book and a height counter: sign, commit, check invariants."""

    def __init__(self, state: State, chain_id: str = CHAIN) -> None:
        self.state = state
        self.chain_id = chain_id
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: Keypair, call, nonce: int | None = None, tip: int = 0) -> bytes:
        if nonce is None:
            nonce = self.nonces.get(key.public, 0)
            self.nonces[key.public] = nonce + 1
        return SignedTransaction.create(Transaction(self.chain_id, key.public, nonce, call, tip), key).to_bytes()

    def commit(self, *txs: bytes) -> list[Receipt]:
        receipts = apply_commit(self.state, self.state.height + 1, list(txs))
        self.state.check_invariants()
        # the incremental root (only the keys written) equals a tree built from nothing from the whole state
        assert self.state.root() == self.state.rebuild_root(), "incremental state root missed a write"
        return receipts

    def ok(self, key: Keypair, call) -> Receipt:
        (r,) = self.commit(self.tx(key, call))
        assert r.ok, r.message
        return r

    def fail(self, key: Keypair, call, rule: str) -> str:
        (r,) = self.commit(self.tx(key, call))
        assert not r.ok and r.rule == rule, (r.rule, r.message)
        return r.message

    def idle(self, n: int) -> None:
        for _ in range(n):
            self.commit()


def make_chain(hp: dict | None = None, **params) -> Chain:
    """A one-subnet chain. Fees are off unless `params` sets them, so the call tests read exact balances;
    tests/protocol/economics/test_fees.py and the property tests run with fees on."""
    hp = {"tempo": 10, "max_allowed_uids": 8, "weights_rate_limit": 5, "min_non_immune_uids": 0} | (hp or {})
    g = build_genesis(
        CHAIN,
        validators=[(VAL.public, 10 * UNIT, EP)],
        balances={k.public: 1000 * UNIT for k in KEYS},
        subnets=[(OWNER.public, "sn1", hp)],
        **({"committee_min_stake": UNIT, "subnet_min_burn": 100 * UNIT, "tx_base_fee": 0, "tx_byte_fee": 0} | params),
    )
    return Chain(State.from_genesis(g))


def registered(chain: Chain, keys: list[Keypair], netuid: int = 1) -> None:
    for k in keys:
        chain.ok(k, Register(netuid, k.public, 100 * UNIT))


# --- envelope -------------------------------------------------------------------------------------------


def test_bad_nonce_replay_and_future():
    c = make_chain()
    raw = c.tx(KEYS[2], Transfer(KEYS[3].public, 5))
    (r,) = c.commit(raw)
    assert r.ok
    (r,) = c.commit(raw)  # replay in a later commit
    assert r.rule == "nonce" and "nonce 0 is already used (next is 1)" in r.message
    (r,) = c.commit(c.tx(KEYS[2], Transfer(KEYS[3].public, 5), nonce=4))
    assert r.rule == "nonce" and "ahead of the next nonce 1" in r.message and "nonces 1..3" in r.message
    assert c.state.next_nonce(KEYS[2].public) == 1


def test_duplicate_in_one_commit_is_skipped():
    c = make_chain()
    raw = c.tx(KEYS[2], Transfer(KEYS[3].public, 7))
    r1, r2 = c.commit(raw, raw)
    assert r1.ok and not r2.ok and r2.rule == "duplicate" and r1.digest == r2.digest
    assert c.state.balances[KEYS[3].public] == 1000 * UNIT + 7


def test_wrong_chain_and_bad_signature_and_garbage():
    c = make_chain()
    other = Chain(c.state, "other-chain")
    (r,) = c.commit(other.tx(KEYS[2], Transfer(KEYS[3].public, 1)))
    assert r.rule == "chain id" and "'other-chain'" in r.message
    stx = SignedTransaction(Transaction(CHAIN, KEYS[2].public, 0, Transfer(KEYS[3].public, 1), 0), b"\x00" * 64)
    (r,) = c.commit(stx.to_bytes())
    assert r.rule == "signature"
    # a verified digest skips the signature check (the node verified it already)
    receipts = apply_commit(c.state, c.state.height + 1, [stx.to_bytes()], verified={stx.digest: None})
    assert receipts[0].ok
    # and a verified transaction's decoded form, when the caller holds it, is what executes (no second decode)
    nxt = SignedTransaction(Transaction(CHAIN, KEYS[2].public, 1, Transfer(KEYS[3].public, 5), 0), b"\x00" * 64)
    before = c.state.balances[KEYS[3].public]
    (r,) = apply_commit(c.state, c.state.height + 1, [nxt.to_bytes()], verified={nxt.digest: nxt})
    assert r.ok and c.state.balances[KEYS[3].public] == before + 5
    (r,) = c.commit(b"\xff\x00garbage")
    assert r.rule == "decode" and not r.ok and r.signer is None


def test_failed_call_consumes_nonce_and_changes_nothing_else():
    c = make_chain()
    root = c.state.root()
    msg = c.fail(KEYS[2], Transfer(KEYS[3].public, 10**18), "balance")
    assert "needs 1000000000 token (1000000000000000000 units) but" in msg and "short by" in msg  # tokens, exact
    assert c.state.next_nonce(KEYS[2].public) == 1 and c.state.root() != root
    assert c.state.balances[KEYS[2].public] == 1000 * UNIT


def test_height_out_of_order():
    c = make_chain()
    with pytest.raises(StateError, match="height 5 out of order: state is at height 0"):
        apply_commit(c.state, 5, [])


def test_check_tx_does_not_change_state():
    c = make_chain()
    root = c.state.root()
    good = SignedTransaction.from_bytes(c.tx(KEYS[2], Transfer(KEYS[3].public, 5), nonce=0))
    check_tx(c.state, good)
    bad = SignedTransaction.from_bytes(c.tx(KEYS[2], Transfer(KEYS[3].public, 10**18), nonce=0))
    with pytest.raises(TxRejected) as e:
        check_tx(c.state, bad)
    assert e.value.rule == "balance"
    future = SignedTransaction.from_bytes(c.tx(KEYS[2], Transfer(KEYS[3].public, 10**18), nonce=3))
    with pytest.raises(TxRejected, match="ahead"):
        check_tx(c.state, future)
    check_tx(c.state, future, allow_future_nonce=True)
    assert c.state.root() == root


# --- accounts and stake ---------------------------------------------------------------------------------


def test_transfer_and_zero_amount():
    c = make_chain()
    c.ok(KEYS[2], Transfer(KEYS[3].public, 3 * UNIT))
    assert c.state.account(KEYS[3].public)["balance"] == 1003 * UNIT
    assert "amount must be positive" in c.fail(KEYS[2], Transfer(KEYS[3].public, 0), "amount")


def test_stake_add_remove():
    c = make_chain()
    hk = KEYS[4].public
    c.ok(KEYS[2], AddStake(hk, 40 * UNIT))
    c.ok(KEYS[3], AddStake(hk, 10 * UNIT))  # a nominator stakes to someone else's hotkey
    assert c.state.hotkey_stake[hk] == 50 * UNIT and c.state.hotkey_owner[hk] == KEYS[2].public
    c.ok(KEYS[3], RemoveStake(hk, 4 * UNIT))
    assert c.state.stake_of(KEYS[3].public, hk) == 6 * UNIT
    msg = c.fail(KEYS[3], RemoveStake(hk, 7 * UNIT), "stake")
    assert f"remove_stake of 7 token ({7 * UNIT} units)" in msg and f"has 6 token ({6 * UNIT} units) staked" in msg
    assert f"short by 1 token ({UNIT} units)" in msg
    c.ok(KEYS[3], RemoveStake(hk, 6 * UNIT))
    assert (KEYS[3].public, hk) not in c.state.stakes
    assert "add_stake needs" in c.fail(KEYS[5], AddStake(hk, 10**18), "balance")


# --- subnets ---------------------------------------------------------------------------------------------


def test_create_subnet_price_doubles_then_decays():
    c = make_chain()
    p0 = c.state.subnet_price()
    assert p0 == 100 * UNIT
    c.ok(KEYS[2], CreateSubnet("two", p0))
    sn = c.state.subnet(2)
    assert sn is not None and sn.owner == KEYS[2].public and c.state.burned == p0
    p1 = c.state.subnet_price()
    assert p1 == 2 * p0 - (p0 // (14 * 7200))  # one height later
    msg = c.fail(KEYS[3], CreateSubnet("three", p0), "price limit")
    assert "above max_burn" in msg and str(p0) in msg
    c.idle(100)
    assert c.state.subnet_price() < p1
    assert "blank" in c.fail(KEYS[3], CreateSubnet("  ", 10**15), "subnet name")


def test_subnet_limit():
    c = make_chain(max_subnets=1)
    assert "1 subnets exist, the limit is 1" in c.fail(KEYS[2], CreateSubnet("x", 10**15), "subnet limit")


def test_set_hyperparameter_owner_and_bounds():
    c = make_chain()
    c.ok(OWNER, SetHyperparameter(1, "kappa", 40000))
    assert c.state.subnet(1).hp.kappa == 40000
    assert "only subnet 1's owner" in c.fail(KEYS[2], SetHyperparameter(1, "kappa", 1), "not owner")
    assert "kappa=70000 is outside its bounds [0, 65535]" in c.fail(
        OWNER, SetHyperparameter(1, "kappa", 70000), "hyperparameter"
    )
    assert "unknown hyperparameter 'kapa'" in c.fail(OWNER, SetHyperparameter(1, "kapa", 1), "hyperparameter")
    assert "switch (0 or 1)" in c.fail(OWNER, SetHyperparameter(1, "commit_reveal_enabled", 2), "hyperparameter")
    assert "[1, 100]" in c.fail(OWNER, SetHyperparameter(1, "reveal_period", 0), "hyperparameter")
    assert "subnet 9 does not exist" in c.fail(OWNER, SetHyperparameter(9, "kappa", 1), "unknown subnet")
    registered(c, KEYS[2:5])
    assert "[3, 256]" in c.fail(OWNER, SetHyperparameter(1, "max_allowed_uids", 2), "hyperparameter")


# --- registration ----------------------------------------------------------------------------------------


def test_register_burn_rises_and_decays():
    c = make_chain()
    sn = c.state.subnet(1)
    price = decayed_burn(sn.burn, sn.hp.burn_half_life, sn.hp.min_burn, sn.hp.max_burn)  # decays before txs
    bal = c.state.balances[KEYS[2].public]
    c.ok(KEYS[2], Register(1, KEYS[2].public, 100 * UNIT))
    b1 = sn.burn
    assert c.state.burned == price and bal - c.state.balances[KEYS[2].public] == price
    assert b1 == price * 126 // 100
    c.idle(360)
    assert c.state.subnet(1).burn < b1 * 51 // 100  # halved within one half-life (plus the decay at registration)
    msg = c.fail(KEYS[3], Register(1, KEYS[3].public, 1), "price limit")
    assert "above max_burn 1" in msg
    assert "already has uid 0 on subnet 1" in c.fail(KEYS[2], Register(1, KEYS[2].public, UNIT), "already registered")
    c.ok(KEYS[2], AddStake(KEYS[7].public, UNIT))  # KEYS[2] now owns hotkey KEYS[7]
    assert "belongs to coldkey" in c.fail(KEYS[3], Register(1, KEYS[7].public, 10**15), "hotkey owner")
    assert "netuid 0 is the root" in c.fail(KEYS[3], Register(0, KEYS[3].public, UNIT), "root subnet")


def test_register_prunes_lowest_emission_non_immune():
    c = make_chain({"max_allowed_uids": 3, "immunity_period": 5})
    registered(c, KEYS[2:5])
    c.idle(6)
    sn = c.state.subnet(1)
    sn.neurons[0].emission, sn.neurons[1].emission, sn.neurons[2].emission = 5, 1, 1  # tie: 1 and 2
    c.ok(KEYS[5], Register(1, KEYS[5].public, 100 * UNIT))
    # tie on emission broken by earlier registration: uid 1 registered before uid 2
    assert sn.neurons[1].hotkey == KEYS[5].public and KEYS[3].public not in sn.uid_of
    # everyone but the new one is non-immune; the new uid 1 is immune, so uid 2 goes next
    c.ok(KEYS[6], Register(1, KEYS[6].public, 100 * UNIT))
    assert sn.neurons[2].hotkey == KEYS[6].public


def test_register_prunes_immune_when_too_few_free():
    c = make_chain({"max_allowed_uids": 2, "immunity_period": 1000, "min_non_immune_uids": 10})
    registered(c, KEYS[2:4])
    c.ok(KEYS[4], Register(1, KEYS[4].public, 100 * UNIT))
    assert c.state.subnet(1).neurons[0].hotkey == KEYS[4].public  # all immune: lowest (emission, reg) goes


def test_serve_axon():
    c = make_chain()
    registered(c, KEYS[2:3])
    c.ok(KEYS[2], ServeAxon(1, "12D3KooWxyz", ("/ip4/1.2.3.4/tcp/5",)))
    assert c.state.metagraph(1)[0]["axon"] == Endpoint("12D3KooWxyz", ("/ip4/1.2.3.4/tcp/5",))
    assert "not a base58" in c.fail(KEYS[2], ServeAxon(1, "bad id!", ()), "peer id")
    assert "multiaddrs[0]" in c.fail(KEYS[2], ServeAxon(1, "12D3KooWxyz", ("ip4/x",)), "multiaddr")
    assert "not registered on subnet 1" in c.fail(KEYS[3], ServeAxon(1, "12D3KooWxyz", ()), "not registered")
    assert "has no stake" in c.fail(KEYS[3], ServeAxon(0, "12D3KooWxyz", ()), "not staked")


# --- committee -------------------------------------------------------------------------------------------


def test_committee_from_stake_and_endpoints():
    c = make_chain()
    (m,) = c.state.committee()
    assert m.hotkey == VAL.public and m.stake == 10 * UNIT and m.peer_id == EP.peer_id
    hk = KEYS[5]
    c.ok(hk, AddStake(hk.public, 20 * UNIT))
    assert len(c.state.committee()) == 1  # staked but no endpoint yet
    c.ok(hk, ServeAxon(0, "12D3KooWnew", ("/ip4/10.0.0.5/tcp/4001",)))
    com = c.state.committee()
    assert [x.hotkey for x in com] == [hk.public, VAL.public] and com[0].stake == 20 * UNIT
    c.ok(hk, RemoveStake(hk.public, 19 * UNIT + 1))  # below committee_min_stake
    assert [x.hotkey for x in c.state.committee()] == [VAL.public]
    c.ok(VAL, RemoveStake(VAL.public, 10 * UNIT))  # nobody eligible: genesis committee
    assert [x.hotkey for x in c.state.committee()] == [VAL.public]


# --- weights ---------------------------------------------------------------------------------------------


def permitted(c: Chain, n_validators: int = 2, n_miners: int = 3) -> list[Keypair]:
    keys = KEYS[2 : 2 + n_validators + n_miners]
    registered(c, keys)
    for i, k in enumerate(keys[:n_validators]):
        c.ok(k, AddStake(k.public, (100 - 10 * i) * UNIT))
    sn = c.state.subnet(1)
    c.idle(next_epoch_height(c.state.height, 1, sn.hp.tempo) - c.state.height)
    assert [n.validator_permit for n in sn.neurons[:n_validators]] == [True] * n_validators
    return keys


def test_set_weights_checks():
    c = make_chain({"min_allowed_weights": 2, "weights_version_key": 7})
    keys = permitted(c, 2, 3)
    v, m = keys[0], keys[3]
    assert "3 uids but 2 values" in c.fail(v, SetWeights(1, (2, 3, 4), (1, 2), 7), "weights length")
    assert "6 weights but subnet 1 has 5 uids" in c.fail(
        v, SetWeights(1, (0, 1, 2, 3, 4, 4), (1,) * 6, 7), "too many weights"
    )
    assert "not registered on subnet 1" in c.fail(KEYS[9], SetWeights(1, (2,), (1,), 7), "not registered")
    assert "version_key 6 is below the subnet's 7" in c.fail(v, SetWeights(1, (2, 3), (1, 1), 6), "version key")
    assert "uid 3 has no validator permit" in c.fail(m, SetWeights(1, (2, 4), (1, 1), 7), "validator permit")
    assert "uid 2 appears more than once" in c.fail(v, SetWeights(1, (2, 2), (1, 1), 7), "duplicate uids")
    assert "uid 9 does not exist on subnet 1 (uids 0..4)" in c.fail(v, SetWeights(1, (2, 9), (1, 1), 7), "invalid uids")
    assert "1 weights, at least 2 needed" in c.fail(v, SetWeights(1, (2,), (1,), 7), "min allowed weights")
    assert "netuid 0 is the root" in c.fail(v, SetWeights(0, (2,), (1,), 7), "root subnet")
    c.ok(m, SetWeights(1, (3,), (5,), 7))  # a lone self-weight needs no permit and beats min_allowed_weights
    c.ok(v, SetWeights(1, (2, 3, 4), (10, 20, 40), 7))
    n = c.state.subnet(1).neurons[0]
    assert n.weights == ((2, 16384), (3, 32768), (4, 65535)) and n.last_update == c.state.height
    last = c.state.height
    msg = c.fail(v, SetWeights(1, (2, 3), (1, 1), 7), "weights rate limit")
    assert msg.endswith(f"last set at height {last}, next allowed at {last + 5}, now {last + 1}")
    c.idle(3)
    c.ok(v, SetWeights(1, (2, 3), (1, 1), 7))


def test_weights_min_stake():
    c = make_chain({"weights_min_stake": 5 * UNIT})
    registered(c, KEYS[2:3])
    msg = c.fail(KEYS[2], SetWeights(1, (0,), (1,), 0), "weights min stake")
    assert f"hotkey stake 0 is below weights_min_stake {5 * UNIT}" in msg


def test_commit_reveal_flow():
    c = make_chain({"commit_reveal_enabled": True, "reveal_period": 1})
    keys = permitted(c, 2, 3)
    v = keys[0]
    uids, vals, salt = (2, 3, 4), (1, 2, 3), b"salt-1"
    assert "by commit_weights" in c.fail(v, SetWeights(1, uids, vals, 0), "commit reveal enabled")
    h = weights_commit_hash(v.public, 1, uids, vals, salt, 0)
    assert "no unrevealed weight commit" in c.fail(v, RevealWeights(1, uids, vals, salt, 0), "no commit")
    c.ok(v, CommitWeights(1, h))
    sn = c.state.subnet(1)
    e = sn.epoch_index
    msg = c.fail(v, RevealWeights(1, uids, vals, salt, 0), "reveal too early")
    start = next_epoch_height(c.state.height, 1, 10) + 1
    assert f"committed in epoch {e}, reveal in epoch {e + 1} (from height {start}), now epoch {e}" in msg
    assert "matches none of the 1" in c.fail(v, RevealWeights(1, uids, vals, b"other", 0), "commit mismatch")
    c.idle(start - c.state.height - 1)
    assert sn.epoch_index == e + 1
    c.ok(v, RevealWeights(1, uids, vals, salt, 0))
    assert sn.neurons[0].weights == ((2, 21845), (3, 43690), (4, 65535)) and v.public not in sn.commits
    # a commit left unrevealed past its reveal epoch expires
    h2 = weights_commit_hash(v.public, 1, uids, vals, b"s2", 0)
    c.idle(5)
    c.ok(v, CommitWeights(1, h2))
    c.idle(2 * 11 + 1)
    assert "earlier epoch" in c.fail(v, RevealWeights(1, uids, vals, b"s2", 0), "commit expired")


def test_commit_limit_and_rate_limit():
    c = make_chain({"commit_reveal_enabled": True, "weights_rate_limit": 0, "reveal_period": 5})
    keys = permitted(c, 1, 1)
    v = keys[0]
    for i in range(10):
        c.ok(v, CommitWeights(1, bytes([i]) * 32))
    assert "10 unrevealed commits (limit 10)" in c.fail(v, CommitWeights(1, b"\xaa" * 32), "too many commits")
    c2 = make_chain({"commit_reveal_enabled": True, "weights_rate_limit": 4})
    (v2,) = permitted(c2, 1, 0)
    c2.ok(v2, CommitWeights(1, b"\x01" * 32))
    h = c2.state.height
    assert f"last commit at height {h}, next allowed at {h + 4}, now {h + 1}" in c2.fail(
        v2, CommitWeights(1, b"\x02" * 32), "weights rate limit"
    )


def test_commit_on_disabled_subnet():
    c = make_chain()
    registered(c, KEYS[2:3])
    assert "takes weights by set_weights" in c.fail(KEYS[2], CommitWeights(1, b"\x00" * 32), "commit reveal disabled")
    assert "takes weights by set_weights" in c.fail(
        KEYS[2], RevealWeights(1, (0,), (1,), b"", 0), "commit reveal disabled"
    )


def test_commit_hash_is_canonical_and_binding():
    h = weights_commit_hash(b"\x01" * 32, 3, [1, 2], [10, 20], b"s", 9)
    assert len(h) == 32 and h == weights_commit_hash(b"\x01" * 32, 3, (1, 2), (10, 20), b"s", 9)
    for other in (
        weights_commit_hash(b"\x02" * 32, 3, [1, 2], [10, 20], b"s", 9),
        weights_commit_hash(b"\x01" * 32, 4, [1, 2], [10, 20], b"s", 9),
        weights_commit_hash(b"\x01" * 32, 3, [2, 1], [10, 20], b"s", 9),
        weights_commit_hash(b"\x01" * 32, 3, [1, 2], [10, 21], b"s", 9),
        weights_commit_hash(b"\x01" * 32, 3, [1, 2], [10, 20], b"t", 9),
        weights_commit_hash(b"\x01" * 32, 3, [1, 2], [10, 20], b"s", 8),
    ):
        assert other != h


# --- epochs and emission ---------------------------------------------------------------------------------


def test_epoch_schedule():
    assert [h for h in range(1, 40) if epoch_due(h, 1, 10)] == [9, 20, 31]
    assert next_epoch_height(9, 1, 10) == 20 and next_epoch_height(8, 1, 10) == 9


def test_scenario_more_weight_more_incentive():
    """3 miners, 2 validators, several tempos: the miner with the most weight earns the most."""
    c = make_chain({"max_allowed_validators": 2})
    keys = permitted(c, 2, 3)
    v1, v2 = keys[0], keys[1]
    sn = c.state.subnet(1)
    before = {k.public: c.state.hotkey_stake.get(k.public, 0) for k in keys}
    for _ in range(4):
        c.commit(
            c.tx(v1, SetWeights(1, (2, 3, 4), (100, 300, 600), 0)),
            c.tx(v2, SetWeights(1, (2, 3, 4), (50, 300, 650), 0)),
        )
        c.idle(10)
    mg = c.state.metagraph(1)
    inc = [mg[u]["incentive"] for u in (2, 3, 4)]
    emi = [mg[u]["emission"] for u in (2, 3, 4)]
    assert inc[0] < inc[1] < inc[2] and emi[0] < emi[1] < emi[2]
    gained = [c.state.hotkey_stake.get(k.public, 0) - before[k.public] for k in keys]
    assert gained[2] < gained[3] < gained[4] and gained[0] > 0 and gained[1] > 0
    assert mg[0]["dividends"] > 0 and mg[0]["validator_permit"] and not mg[2]["validator_permit"]
    assert sn.epoch_index >= 5


def test_epoch_split_18_41_41_and_take():
    c = make_chain({"tempo": 4})
    keys = permitted(c, 1, 1)
    v, m = keys
    nominator = KEYS[9]
    c.ok(nominator, AddStake(v.public, 100 * UNIT))  # v has 100 own + 100 nominated
    c.ok(v, SetWeights(1, (1,), (1,), 0))
    sn = c.state.subnet(1)
    c.idle(next_epoch_height(c.state.height, 1, 4) - c.state.height - 1)
    pend = (sn.pending_owner, sn.pending_miners, sn.pending_validators)
    stakes = (c.state.stake_of(v.public, v.public), c.state.stake_of(nominator.public, v.public))
    m_stake = c.state.hotkey_stake.get(m.public, 0)
    owner_bal = c.state.balances[OWNER.public]
    c.commit()  # minting this height then the epoch
    minted = c.state.params.base_emission
    owner_cut, miners, validators = (
        pend[0] + minted * 11796 // 65535,
        pend[1] + (minted - minted * 11796 // 65535) // 2,
        pend[2] + minted - minted * 11796 // 65535 - (minted - minted * 11796 // 65535) // 2,
    )
    assert c.state.balances[OWNER.public] - owner_bal == owner_cut
    assert c.state.hotkey_stake[m.public] - m_stake == miners
    gain_v = c.state.stake_of(v.public, v.public) - stakes[0]
    gain_n = c.state.stake_of(nominator.public, v.public) - stakes[1]
    assert gain_v + gain_n == validators
    take = validators * 11796 // 65535
    staked = sorted([(v.public, stakes[0]), (nominator.public, stakes[1])])
    shares = dict(zip([k for k, _ in staked], apportion(validators - take, [a for _, a in staked]), strict=True))
    assert gain_n == shares[nominator.public] and gain_v == take + shares[v.public]
    assert sn.pending == 0


def test_no_subnets_no_minting():
    g = build_genesis(CHAIN, validators=[(VAL.public, 10 * UNIT, EP)])
    st = State.from_genesis(g)
    apply_commit(st, 1, [])
    assert st.issued == 10 * UNIT


def test_snapshot_roundtrip_after_activity():
    c = make_chain()
    permitted(c, 2, 2)
    c.ok(KEYS[2], SetWeights(1, (2, 3), (1, 2), 0))
    c.idle(12)
    snap = c.state.snapshot()
    loaded = State.load(snap)
    assert loaded.root() == c.state.root() and loaded.snapshot() == snap
    c2 = Chain(loaded)
    c2.nonces = dict(c.nonces)
    tx = c.tx(KEYS[3], Transfer(KEYS[4].public, 9))
    c.commit(tx)
    c2.commit(tx)
    assert loaded.root() == c.state.root()
    with pytest.raises(StateError):
        State.load(snap[:-3])
    with pytest.raises(StateError):
        State.load(b"\x80")
