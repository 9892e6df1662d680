"""Governance transactions and the governance step of each height: propose, vote, then tally and execute
(spec/economics.md §2). The proposal records, the governable parameters and their bounds are in
protocol/state/governance.py."""

from __future__ import annotations

from protocol import crypto
from protocol.errors import TxRejected
from protocol.messages import Propose, Vote
from protocol.state.governance import (
    CHOICES,
    EXECUTED,
    FAILED,
    MAX_OPEN_PROPOSALS,
    PASSED,
    REJECTED,
    VOTING,
    Proposal,
    check_change,
)
from protocol.state.state import State


def tx_propose(st: State, signer: bytes, c: Propose, dry: bool) -> None:
    """Lock the deposit, snapshot the stake, open voting until created_at + voting_period."""
    p = st.params
    check_change(c.name, c.value, p, st.governance.default_hp)
    open_ = st.governance.open()
    if len(open_) >= MAX_OPEN_PROPOSALS:
        free = min(x.voting_ends if x.status == VOTING else x.executes_at for x in open_)
        raise TxRejected(
            "too many proposals",
            f"{len(open_)} proposals are open (limit {MAX_OPEN_PROPOSALS}); the first may close at height {free} "
            f"(at its tally if rejected, else at its execution): retry after it (now {st.height})",
        )
    st.need_balance(signer, p.gov_deposit, "propose (deposit)")
    if dry:
        return
    st.debit(signer, p.gov_deposit)
    snapshot = {pos: amount for pos, amount in st.stakes.items() if amount > 0}
    g = st.governance
    ends = st.height + p.gov_voting_period
    g.proposals[g.next_id] = Proposal(
        g.next_id, signer, c.name, c.value, c.memo, st.height, ends, ends + p.gov_execution_delay, p.gov_deposit,
        p.gov_quorum_bps, p.gov_threshold_bps, sum(snapshot.values()), snapshot,
    )  # fmt: skip
    g.next_id += 1


def tx_vote(st: State, signer: bytes, c: Vote, dry: bool) -> None:
    """Record one yes / no / abstain vote: for the signer's own snapshot positions (as coldkey), and for the
    positions delegated to it (as hotkey) whose coldkeys have not voted themselves."""
    prop = st.governance.proposals.get(c.proposal)
    if prop is None:
        ids = ", ".join(str(x.pid) for x in st.governance.open()) or "none"
        raise TxRejected("unknown proposal", f"no proposal {c.proposal} (open proposals: {ids})")
    if prop.status != VOTING or st.height > prop.voting_ends:
        raise TxRejected(
            "voting closed",
            f"voting on proposal {prop.pid} ran from height {prop.created_at} to {prop.voting_ends}, now "
            f"{st.height} (status {prop.status}); it takes no more votes",
        )
    if c.choice not in CHOICES:
        raise TxRejected("vote choice", f"choice {c.choice} is not 0 (no), 1 (yes) or 2 (abstain)")
    if signer in prop.votes:
        was, at = prop.votes[signer]
        raise TxRejected(
            "already voted",
            f"{crypto.address(signer)} voted {CHOICES[was]} on proposal {prop.pid} at height {at}; "
            "a vote cannot be changed",
        )
    positions = prop.positions_of(signer)
    if not positions:
        raise TxRejected(
            "no voting stake",
            f"{crypto.address(signer)} held no stake as a coldkey and had none delegated to it as a hotkey when "
            f"proposal {prop.pid} was created (height {prop.created_at}); stake added later does not count",
        )
    if dry:
        return
    for cold, hot, amount in positions:  # move each position the vote now decides from its old bucket
        if cold == signer or cold not in prop.votes:
            prop._add(prop.choice_of(cold, hot), -amount)
    prop.votes[signer] = (c.choice, st.height)
    st.changed_proposal(prop.pid)
    for cold, _hot, amount in positions:
        if cold == signer or cold not in prop.votes:
            prop._add(c.choice, amount)


def _tally(st: State, prop: Proposal) -> None:
    st.changed_proposal(prop.pid)
    quorum = prop.quorum_reached()
    if quorum:
        st.credit(prop.proposer, prop.deposit)
        refund = "deposit returned"
    else:
        st.burned += prop.deposit
        refund = "deposit burned"
    prop.voters = len(prop.votes)
    prop.snapshot, prop.votes, prop._index = {}, {}, None
    turnout = f"turnout {prop.turnout} of {prop.snapshot_total} (quorum {prop.quorum_bps} bps)"
    if not quorum:
        prop.status, prop.outcome = REJECTED, f"no quorum: {turnout}; {refund}"
    elif not prop.threshold_reached():
        prop.status = REJECTED
        prop.outcome = f"threshold not met: yes {prop.yes}, no {prop.no} (needs > {prop.threshold_bps} bps); {refund}"
    else:
        prop.status = PASSED
        prop.outcome = f"passed: yes {prop.yes}, no {prop.no}, {turnout}; {refund}; executes at {prop.executes_at}"


def _execute(st: State, prop: Proposal) -> None:
    st.changed_proposal(prop.pid)
    try:
        st.params, st.governance.default_hp = check_change(prop.name, prop.value, st.params, st.governance.default_hp)
    except TxRejected as exc:
        prop.status, prop.outcome = FAILED, f"not executed at height {st.height}: {exc}"
        return
    prop.status, prop.outcome = EXECUTED, f"{prop.name} = {prop.value} from height {st.height}"


def end_of_height(st: State) -> None:
    """The governance step of apply_commit: tally proposals whose voting ends at this height, then execute
    passed proposals due at this height; each in proposal id order."""
    g = st.governance
    for prop in g.open():
        if prop.status == VOTING and prop.voting_ends == st.height:
            _tally(st, prop)
    for prop in g.open():
        if prop.status == PASSED and prop.executes_at == st.height:
            _execute(st, prop)
