"""On-chain governance: stake-weighted proposals that change a bounded set of network parameters.

spec/economics.md §2 is normative. `propose(name, value, memo)` locks a deposit and snapshots every stake
position (coldkey, hotkey, amount); `vote(proposal, choice)` is cast by a coldkey for its own positions and by a
hotkey (a validator) for the positions delegated to it, and a delegator's own vote overrides its hotkey's (as
Cosmos delegators override their validator). When the voting window closes the proposal is tallied (quorum and
threshold fixed at its creation); a passed proposal
executes `execution_delay` heights later, in apply_commit after the transactions and before the lifecycle
scores, emission and epochs. Pure and deterministic: integers, heights, sorted encodings. This module holds
the records and the parameter bounds (protocol/state/state.py imports it); the transactions and the
end-of-height tally are in protocol/state/handlers/governance.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from protocol.economics.emission import TOTAL_SUPPLY, UNIT
from protocol.economics.fees import BASE_FEE_BOUNDS, BYTE_FEE_BOUNDS
from protocol.economics.hyperparams import NAMES as HP_NAMES
from protocol.economics.hyperparams import Hyperparams
from protocol.errors import TxRejected

NO, YES, ABSTAIN = 0, 1, 2
CHOICES = {NO: "no", YES: "yes", ABSTAIN: "abstain"}
BPS = 10_000  # quorum and threshold are in basis points
MAX_OPEN_PROPOSALS = 8  # proposals voting or waiting to execute, network-wide
DEFAULT_PREFIX = "default."  # "default.<hyperparameter>": the hyperparameters new subnets start with
U32_MAX = (1 << 32) - 1

# Network parameters a proposal may set, with inclusive bounds. Each is a field of state.Params.
NETWORK_PARAMS: dict[str, tuple[int, int]] = {
    "base_emission": (0, 1000 * UNIT),
    "max_subnets": (1, 65534),
    "subnet_immunity_period": (0, U32_MAX),
    "subnet_min_burn": (0, TOTAL_SUPPLY),
    "subnet_burn_interval": (1, U32_MAX),
    "committee_size": (1, 256),
    "committee_min_stake": (1, TOTAL_SUPPLY),
    "gov_deposit": (0, TOTAL_SUPPLY),
    "gov_voting_period": (1, 10_000_000),
    "gov_execution_delay": (0, 10_000_000),
    "gov_quorum_bps": (1, BPS),
    "gov_threshold_bps": (BPS // 2, BPS - 1),
    "tx_base_fee": BASE_FEE_BOUNDS,
    "tx_byte_fee": BYTE_FEE_BOUNDS,
}

# Statuses: voting -> passed -> executed | failed;  voting -> rejected.
VOTING, PASSED, REJECTED, EXECUTED, FAILED = "voting", "passed", "rejected", "executed", "failed"


def parameter_names() -> list[str]:
    return sorted(NETWORK_PARAMS) + [DEFAULT_PREFIX + n for n in HP_NAMES]


def check_change(name: str, value: int, params: Any, default_hp: Hyperparams) -> tuple[Any, Hyperparams]:
    """(params, default_hp) with `name` set to `value`, or TxRejected naming the bound that is broken."""
    if name in NETWORK_PARAMS:
        lo, hi = NETWORK_PARAMS[name]
        if not lo <= value <= hi:
            raise TxRejected("proposal value", f"{name}={value} is outside its bounds [{lo}, {hi}]")
        return dataclasses.replace(params, **{name: value}), default_hp
    if name.startswith(DEFAULT_PREFIX) and name[len(DEFAULT_PREFIX) :] in HP_NAMES:
        try:
            hp = default_hp.with_value(name[len(DEFAULT_PREFIX) :], value, n_uids=0, path=name)
        except TxRejected as exc:
            raise TxRejected("proposal value", str(exc).removeprefix("hyperparameter: ")) from None
        return params, hp
    raise TxRejected(
        "proposal parameter",
        f"{name!r} is not a governable parameter (network: {', '.join(sorted(NETWORK_PARAMS))}; "
        f"subnet defaults: {DEFAULT_PREFIX}<hyperparameter>)",
    )


@dataclass(slots=True)
class Proposal:
    pid: int
    proposer: bytes
    name: str
    value: int
    memo: str
    created_at: int
    voting_ends: int  # the last height at which votes count
    executes_at: int  # voting_ends + execution_delay
    deposit: int
    quorum_bps: int
    threshold_bps: int
    snapshot_total: int  # total stake at creation
    snapshot: dict[tuple[bytes, bytes], int] = field(default_factory=dict)  # (coldkey, hotkey) -> stake (voting)
    votes: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # voter -> (choice, height)
    yes: int = 0
    no: int = 0
    abstain: int = 0
    voters: int = 0
    status: str = VOTING
    outcome: str = ""
    # key -> the snapshot positions it votes for (as coldkey or hotkey): derived, rebuilt on demand, never encoded
    _index: dict[bytes, list[tuple[bytes, bytes, int]]] | None = field(default=None, compare=False, repr=False)

    @property
    def turnout(self) -> int:
        return self.yes + self.no + self.abstain

    def quorum_reached(self) -> bool:
        return self.snapshot_total > 0 and self.turnout * BPS >= self.quorum_bps * self.snapshot_total

    def threshold_reached(self) -> bool:
        return self.yes * BPS > self.threshold_bps * (self.yes + self.no)

    def positions_of(self, key: bytes) -> list[tuple[bytes, bytes, int]]:
        """The snapshot positions `key` holds as coldkey or that are delegated to it as hotkey, in key order."""
        if self._index is None:
            index: dict[bytes, list[tuple[bytes, bytes, int]]] = {}
            for (cold, hot), amount in sorted(self.snapshot.items()):
                index.setdefault(cold, []).append((cold, hot, amount))
                if hot != cold:
                    index.setdefault(hot, []).append((cold, hot, amount))
            self._index = index
        return self._index.get(key, [])

    def choice_of(self, cold: bytes, hot: bytes) -> int | None:
        """How a position votes: its coldkey's vote, else its hotkey's, else not at all (spec/economics.md §2.4)."""
        vote = self.votes.get(cold) or self.votes.get(hot)
        return None if vote is None else vote[0]

    def carried(self, voter: bytes) -> int:
        """The stake `voter`'s vote counts for now: its own positions and delegated ones not overridden."""
        return sum(a for c, h, a in self.positions_of(voter) if c == voter or c not in self.votes)

    def recount(self) -> tuple[int, int, int]:
        """(yes, no, abstain) from the snapshot and the votes, from scratch (the invariant check)."""
        totals = [0, 0, 0]
        for (cold, hot), amount in self.snapshot.items():
            choice = self.choice_of(cold, hot)
            if choice is not None:
                totals[choice] += amount
        return totals[YES], totals[NO], totals[ABSTAIN]

    def _add(self, choice: int | None, amount: int) -> None:
        if choice == YES:
            self.yes += amount
        elif choice == NO:
            self.no += amount
        elif choice == ABSTAIN:
            self.abstain += amount

    def snapshot_obj(self) -> list:
        return [[c, h, v] for (c, h), v in sorted(self.snapshot.items())]

    def to_obj(self, snapshot_digest: bytes | None = None) -> list:
        """The encoded proposal; the state root's record gives the positions' digest instead (spec/state.md §9.1)."""
        return [
            self.pid,
            self.proposer,
            self.name,
            self.value,
            self.memo,
            [self.created_at, self.voting_ends, self.executes_at],
            [self.deposit, self.quorum_bps, self.threshold_bps, self.snapshot_total],
            self.snapshot_obj() if snapshot_digest is None else snapshot_digest,
            [[k, *v] for k, v in sorted(self.votes.items())],
            [self.yes, self.no, self.abstain, self.voters],
            self.status,
            self.outcome,
        ]

    @classmethod
    def from_obj(cls, o: list) -> Proposal:
        if type(o) is not list or len(o) != 12:
            raise ValueError("a proposal has 12 fields")
        return cls(
            o[0], o[1], o[2], o[3], o[4], *o[5], *o[6],
            {(c, h): v for c, h, v in o[7]},
            {k: (c, h) for k, c, h in o[8]},
            *o[9], o[10], o[11],
        )  # fmt: skip


@dataclass(slots=True)
class Governance:
    """Governance state: proposals by id (never reused) and the default hyperparameters of new subnets."""

    proposals: dict[int, Proposal] = field(default_factory=dict)
    next_id: int = 1
    default_hp: Hyperparams = field(default_factory=Hyperparams)

    def open(self) -> list[Proposal]:
        return [p for _, p in sorted(self.proposals.items()) if p.status in (VOTING, PASSED)]

    def escrowed(self) -> int:
        """Deposits held while proposals are voting (conservation counts them)."""
        return sum(p.deposit for p in self.proposals.values() if p.status == VOTING)

    def check(self) -> None:
        for pid, p in self.proposals.items():
            assert pid == p.pid < self.next_id, f"proposal {pid}: id out of sync"
            assert p.created_at <= p.voting_ends <= p.executes_at, f"proposal {pid}: heights out of order"
            if p.status == VOTING:
                assert (p.yes, p.no, p.abstain) == p.recount(), f"proposal {pid}: tally out of sync with votes"
                assert sum(p.snapshot.values()) == p.snapshot_total, f"proposal {pid}: snapshot total"
            else:
                assert not p.snapshot and not p.votes, f"proposal {pid}: snapshot kept after the tally"
        self.default_hp.check_all()

    def to_obj(self) -> list:
        return [self.next_id, [p.to_obj() for _, p in sorted(self.proposals.items())], self.default_hp.to_obj()]

    @classmethod
    def from_obj(cls, o: list) -> Governance:
        if type(o) is not list or len(o) != 3:
            raise ValueError("governance state is [next_id, proposals, default hyperparameters]")
        props = [Proposal.from_obj(p) for p in o[1]]
        return cls({p.pid: p for p in props}, o[0], Hyperparams.from_obj(o[2]))
