"""Governance (spec/economics.md §2): proposals, stake-weighted votes, tally, execution, and every rejection."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.economics.emission import UNIT, block_emission
from protocol.messages import AddStake, CreateSubnet, Propose, RemoveStake, Transfer, Vote
from protocol.state.governance import ABSTAIN, EXECUTED, FAILED, MAX_OPEN_PROPOSALS, NO, PASSED, REJECTED, YES
from protocol.state.state import State
from protocol.state.transition import check_tx
from tests.protocol.state.test_state import KEYS, VAL, Chain, make_chain

DEPOSIT = 10 * UNIT
A, B, C, D = KEYS[2], KEYS[3], KEYS[4], KEYS[5]  # A: 60, B: 30, C: 10 staked (plus VAL's 10 genesis stake)
H6, H7, H8 = KEYS[6], KEYS[7], KEYS[8]  # the hotkeys A, B and C delegate to


def gov_chain(quorum_bps: int = 5000, threshold_bps: int = 5000, period: int = 3, delay: int = 2) -> Chain:
    c = make_chain(
        gov_deposit=DEPOSIT,
        gov_voting_period=period,
        gov_execution_delay=delay,
        gov_quorum_bps=quorum_bps,
        gov_threshold_bps=threshold_bps,
        subnet_min_burn=UNIT,
        subnet_burn_interval=1,
    )
    c.commit(
        c.tx(A, AddStake(H6.public, 60 * UNIT)),
        c.tx(B, AddStake(H7.public, 30 * UNIT)),
        c.tx(C, AddStake(H8.public, 10 * UNIT)),
    )
    return c


def test_propose_locks_the_deposit_and_snapshots_stake():
    c = gov_chain()
    bal = c.state.balances[D.public]
    c.ok(D, Propose("base_emission", 2 * UNIT, "double it"))
    (p,) = c.state.governance.proposals.values()
    assert (p.pid, p.proposer, p.name, p.value, p.memo) == (1, D.public, "base_emission", 2 * UNIT, "double it")
    assert (p.created_at, p.voting_ends, p.executes_at, p.deposit) == (2, 5, 7, DEPOSIT)
    assert c.state.balances[D.public] == bal - DEPOSIT and c.state.governance.escrowed() == DEPOSIT
    assert p.snapshot == {(A.public, H6.public): 60 * UNIT, (B.public, H7.public): 30 * UNIT,
                          (C.public, H8.public): 10 * UNIT, (VAL.public, VAL.public): 10 * UNIT}
    assert p.snapshot_total == 110 * UNIT


def test_passed_proposal_executes_at_its_height_before_emission():
    c = gov_chain()
    c.ok(D, Propose("base_emission", 3 * UNIT, ""))  # height 2: votes through 5, executes at 7
    c.ok(A, Vote(1, YES))
    c.ok(C, Vote(1, NO))  # height 4
    c.idle(1)  # height 5: tally
    p = c.state.governance.proposals[1]
    assert p.status == PASSED and (p.yes, p.no, p.abstain, p.voters) == (60 * UNIT, 10 * UNIT, 0, 2)
    assert "executes at 7" in p.outcome and p.snapshot == {} and p.votes == {}
    assert c.state.balances[D.public] == 1000 * UNIT  # quorum reached: deposit returned
    c.idle(1)  # height 6
    assert c.state.params.base_emission == UNIT
    issued = c.state.issued
    c.idle(1)  # height 7: executes, then this height's mint already uses it
    assert c.state.params.base_emission == 3 * UNIT and p.status == EXECUTED
    assert c.state.issued - issued == block_emission(3 * UNIT, issued)


def test_no_quorum_burns_the_deposit():
    c = gov_chain(quorum_bps=5000)
    c.ok(D, Propose("max_subnets", 5, ""))
    c.ok(B, Vote(1, YES))  # 30 of 110 < 50%
    burned = c.state.burned
    c.idle(3)
    p = c.state.governance.proposals[1]
    assert p.status == REJECTED and p.outcome.startswith("no quorum") and "deposit burned" in p.outcome
    assert c.state.burned - burned >= DEPOSIT and c.state.params.max_subnets == 32
    assert c.state.balances[D.public] == 1000 * UNIT - DEPOSIT


def test_threshold_counts_yes_against_no_and_abstain_only_for_quorum():
    c = gov_chain(quorum_bps=5000, threshold_bps=5000)
    c.ok(D, Propose("max_subnets", 5, ""))
    c.ok(A, Vote(1, ABSTAIN))  # 60: quorum reached by abstention
    c.ok(B, Vote(1, NO))
    c.ok(C, Vote(1, YES))
    c.idle(3)
    p = c.state.governance.proposals[1]
    assert p.status == REJECTED and p.outcome.startswith("threshold not met") and "deposit returned" in p.outcome
    assert c.state.balances[D.public] == 1000 * UNIT
    c.idle(3)
    assert c.state.params.max_subnets == 32


def test_exact_half_does_not_pass():
    c = gov_chain(quorum_bps=1, threshold_bps=5000)
    c.ok(D, AddStake(KEYS[9].public, 40 * UNIT))
    c.ok(D, Propose("max_subnets", 5, ""))
    c.commit(c.tx(B, Vote(1, YES)), c.tx(C, Vote(1, YES)), c.tx(D, Vote(1, NO)))  # 40 yes, 40 no
    c.idle(3)
    p = c.state.governance.proposals[1]
    assert (p.yes, p.no) == (40 * UNIT, 40 * UNIT)
    assert p.status == REJECTED and "needs > 5000 bps" in p.outcome


def test_default_hyperparameters_apply_to_new_subnets_only():
    c = gov_chain(delay=0)
    c.ok(D, Propose("default.tempo", 77, ""))
    c.ok(A, Vote(1, YES))
    c.idle(2)  # height 5: tally and execute (delay 0)
    assert c.state.governance.proposals[1].status == EXECUTED
    assert c.state.governance.default_hp.tempo == 77
    assert c.state.subnets[1].hp.tempo == 10  # the owner's value is untouched
    c.ok(D, CreateSubnet("new", 10**15))
    assert c.state.subnets[2].hp.tempo == 77


def test_execution_that_became_invalid_fails_without_change():
    c = gov_chain(delay=1)
    c.ok(D, Propose("default.min_burn", 50 * UNIT, ""))  # valid now: max_burn is 100 tokens
    c.ok(D, Propose("default.max_burn", 20 * UNIT, ""))  # also valid now, but not after the first executes
    c.commit(c.tx(A, Vote(1, YES)), c.tx(A, Vote(2, YES)))
    c.idle(3)
    first, second = c.state.governance.proposals[1], c.state.governance.proposals[2]
    assert first.status == EXECUTED and second.status == FAILED
    assert "max_burn=20000000000 is outside its bounds" in second.outcome
    assert c.state.governance.default_hp.max_burn == 100 * UNIT


def test_committee_size_changes_the_committee():
    c = gov_chain(delay=0)
    c.ok(D, Propose("committee_size", 1, ""))
    c.ok(A, Vote(1, YES))
    c.idle(2)
    assert c.state.params.committee_size == 1 and len(c.state.committee()) == 1


# --- rejections ------------------------------------------------------------------------------------------


def test_propose_rejections():
    c = gov_chain()
    assert "'bogus' is not a governable parameter" in c.fail(D, Propose("bogus", 1, ""), "proposal parameter")
    assert "default.<hyperparameter>" in c.fail(D, Propose("default.bogus", 1, ""), "proposal parameter")
    msg = c.fail(D, Propose("committee_size", 300, ""), "proposal value")
    assert msg == "proposal value: committee_size=300 is outside its bounds [1, 256]"
    msg = c.fail(D, Propose("gov_threshold_bps", 4000, ""), "proposal value")
    assert "[5000, 9999]" in msg
    assert "default.kappa: kappa=70000 is outside its bounds [0, 65535]" in c.fail(
        D, Propose("default.kappa", 70000, ""), "proposal value"
    )
    c.ok(D, Transfer(VAL.public, c.state.balances[D.public] - UNIT))
    assert "needs 10 token (10000000000 units) but" in c.fail(D, Propose("max_subnets", 5, ""), "balance")


def test_too_many_open_proposals():
    c = gov_chain(period=50)
    for _ in range(MAX_OPEN_PROPOSALS):
        c.ok(A, Propose("max_subnets", 5, ""))
    msg = c.fail(A, Propose("max_subnets", 5, ""), "too many proposals")
    assert f"{MAX_OPEN_PROPOSALS} proposals are open (limit {MAX_OPEN_PROPOSALS})" in msg
    assert "first may close at height 52" in msg


def test_vote_rejections():
    c = gov_chain(period=6)
    assert "no proposal 1 (open proposals: none)" in c.fail(A, Vote(1, YES), "unknown proposal")
    c.ok(D, Propose("max_subnets", 5, ""))  # height 3, votes through 9
    assert "choice 3 is not 0 (no), 1 (yes) or 2 (abstain)" in c.fail(A, Vote(1, 3), "vote choice")
    c.ok(A, Vote(1, YES))
    msg = c.fail(A, Vote(1, NO), "already voted")
    assert "voted yes on proposal 1 at height" in msg and "cannot be changed" in msg
    c.ok(KEYS[9], AddStake(KEYS[9].public, UNIT))
    msg = c.fail(KEYS[9], Vote(1, YES), "no voting stake")
    assert "when proposal 1 was created (height 3)" in msg and "stake added later does not count" in msg
    c.ok(C, Vote(1, ABSTAIN))  # height 9: the last height of the window
    msg = c.fail(B, Vote(1, YES), "voting closed")
    assert "ran from height 3 to 9, now 10 (status passed)" in msg and "takes no more votes" in msg


def test_a_hotkey_votes_the_stake_delegated_to_it():
    c = gov_chain(quorum_bps=5000, period=10)
    c.ok(B, AddStake(H6.public, 20 * UNIT))  # H6 now holds A's 60 and B's 20
    c.ok(A, Transfer(H6.public, UNIT))  # the hotkey pays its vote's fee
    c.ok(D, Propose("max_subnets", 5, ""))
    c.ok(H6, Vote(1, YES))  # a validator votes with its hotkey: A's and B's positions follow it
    p = c.state.governance.proposals[1]
    assert (p.yes, p.no, p.abstain) == (80 * UNIT, 0, 0) and p.carried(H6.public) == 80 * UNIT
    c.ok(B, Vote(1, NO))  # B overrides for all its positions: its 20 on H6 and its 30 on H7
    assert (p.yes, p.no) == (60 * UNIT, 50 * UNIT) and p.carried(H6.public) == 60 * UNIT
    c.idle(10)
    assert p.status == EXECUTED and p.voters == 2 and (p.yes, p.no) == (60 * UNIT, 50 * UNIT)


def test_a_delegator_that_voted_first_is_not_moved_by_its_hotkey():
    c = gov_chain(quorum_bps=1, period=10)
    c.ok(A, Transfer(H6.public, UNIT))
    c.ok(D, Propose("max_subnets", 5, ""))
    c.ok(A, Vote(1, NO))
    c.ok(H6, Vote(1, YES))  # only A's position is on H6 and A decided it: the hotkey's vote carries nothing
    p = c.state.governance.proposals[1]
    assert (p.yes, p.no, p.abstain) == (0, 60 * UNIT, 0) and p.carried(H6.public) == 0
    assert (p.yes, p.no, p.abstain) == p.recount()


def test_vote_order_does_not_change_the_tally():
    """The same votes in any order give the same totals: the rule is a function of the final vote set."""
    orders = [[A, H6, B, H7], [H6, H7, A, B], [B, H7, H6, A]]
    results = set()
    for order in orders:
        c = gov_chain(quorum_bps=1, period=10)
        c.ok(B, AddStake(H6.public, 20 * UNIT))
        c.commit(c.tx(A, Transfer(H6.public, UNIT)), c.tx(A, Transfer(H7.public, UNIT)))
        c.ok(D, Propose("max_subnets", 5, ""))
        choice = {A.public: ABSTAIN, H6.public: YES, B.public: NO, H7.public: YES}
        for k in order:
            c.ok(k, Vote(1, choice[k.public]))
        p = c.state.governance.proposals[1]
        assert (p.yes, p.no, p.abstain) == p.recount()
        results.add((p.yes, p.no, p.abstain))
    assert results == {(0, 50 * UNIT, 60 * UNIT)}  # A abstains on H6; B votes no on H6 and H7


def test_votes_weigh_the_snapshot_not_later_stake():
    c = gov_chain(quorum_bps=1, period=10)
    c.ok(D, Propose("max_subnets", 5, ""))
    c.ok(A, RemoveStake(KEYS[6].public, 59 * UNIT))  # A unstakes after the snapshot: still weighs 60
    c.ok(A, Vote(1, YES))
    c.ok(B, AddStake(KEYS[7].public, 500 * UNIT))  # B stakes more: still weighs 30
    c.ok(B, Vote(1, NO))
    p = c.state.governance.proposals[1]
    assert (p.yes, p.no) == (60 * UNIT, 30 * UNIT)


def test_check_tx_and_snapshot_round_trip_mid_vote():
    from protocol.messages import SignedTransaction

    c = gov_chain()
    c.ok(D, Propose("subnet_immunity_period", 9, "m"))
    c.ok(A, Vote(1, YES))
    root = c.state.root()
    check_tx(c.state, SignedTransaction.from_bytes(c.tx(B, Vote(1, NO))))
    assert c.state.root() == root
    loaded = State.load(c.state.snapshot())
    assert loaded.root() == root and loaded.governance.proposals[1].votes == c.state.governance.proposals[1].votes
    loaded.check_invariants()


# --- property test: two independent instances, random governance traffic ---------------------------------

N = 8
key_i = st.integers(0, N - 1)
params = st.sampled_from(
    [("base_emission", 2 * UNIT), ("max_subnets", 3), ("committee_size", 2), ("default.tempo", 5),
     ("default.min_burn", 10**12), ("default.max_burn", 10**9), ("gov_voting_period", 2), ("gov_deposit", UNIT),
     ("gov_quorum_bps", 1), ("committee_size", 999), ("bogus", 1)]
)  # fmt: skip


def _call(draw):
    kind = draw(st.integers(0, 5))
    k = KEYS[draw(key_i)].public
    if kind == 0:
        name, value = draw(params)
        return Propose(name, value, "")
    if kind in (1, 2):
        return Vote(draw(st.integers(1, 3)), draw(st.sampled_from([NO, YES, YES, ABSTAIN, 3])))
    if kind == 3:
        return AddStake(k, draw(st.sampled_from([0, UNIT, 40 * UNIT])))
    if kind == 4:
        return RemoveStake(k, draw(st.sampled_from([UNIT, 40 * UNIT])))
    return CreateSubnet("s", 10**15)


@st.composite
def schedules(draw):
    n_commits = draw(st.integers(1, 30))
    signer = st.sampled_from([0, 2, 3, 4, 0, 2, 3, 4, 5, 6])  # mostly the keys that hold stake at genesis + 1
    return [[(draw(signer), _call(draw)) for _ in range(draw(st.integers(0, 4)))] for _ in range(n_commits)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_random_governance_traffic_agrees_and_conserves(schedule):
    a, b = gov_chain(quorum_bps=1000), gov_chain(quorum_bps=1000)
    for chain in (a, b):
        for txs in schedule:
            chain.commit(*[chain.tx(KEYS[i], call) for i, call in txs])  # checks conservation every commit
    assert a.state.root() == b.state.root()
    assert a.state.params == b.state.params
    loaded = State.load(a.state.snapshot())
    assert loaded.root() == a.state.root()
    loaded.check_invariants()
    for p in a.state.governance.proposals.values():
        assert p.status in ("voting", "passed", "rejected", "executed", "failed")
        if p.status in ("voting", "passed"):
            assert a.state.height < (p.voting_ends if p.status == "voting" else p.executes_at)
