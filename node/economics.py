"""JSON views of the chain's economics for the HTTP API: subnet lifecycle (score, immunity, deregistrations)
and governance (rules, parameters, proposals).

Read-only; each function takes the State between commits and returns plain JSON-ready values
(addresses as `tn...` strings). spec/economics.md defines the figures.
"""

from __future__ import annotations

from typing import Any

from protocol import crypto
from protocol.economics.hyperparams import NAMES as HP_NAMES
from protocol.state.governance import CHOICES, DEFAULT_PREFIX, NETWORK_PARAMS, VOTING, Proposal
from protocol.state.lifecycle import Deregistration
from protocol.state.state import State, Subnet


def lifecycle_view(state: State, sn: Subnet) -> dict[str, Any]:
    """A subnet's lifecycle figures: its score (EMA of its stake), creation height and immunity."""
    until = state.subnet_immunity(sn)
    return {
        "created_at": sn.created_at,
        "score": state.lifecycle.scores.get(sn.netuid, 0),
        "stake": state.subnet_stake(sn),
        "immune_until": until,
        "immune": state.height < until,
    }


def deregistration_view(d: Deregistration) -> dict[str, Any]:
    return {
        "netuid": d.netuid,
        "name": d.name,
        "owner": crypto.address(d.owner),
        "created_at": d.created_at,
        "height": d.height,
        "replaced_by": crypto.address(d.replaced_by),
        "score": d.score,
        "neurons": d.neurons,
        "owner_paid": d.owner_paid,
        "neurons_paid": d.neurons_paid,
        "unissued": d.unissued,
        "stake_returned": d.stake_returned,
        "stake_positions": d.stake_positions,
    }


def deregistrations(state: State) -> list[dict[str, Any]]:
    """Every deregistration, oldest first."""
    return [deregistration_view(d) for d in state.lifecycle.history]


# --- governance ------------------------------------------------------------------------------------------


def proposal_view(state: State, p: Proposal, *, votes: bool = False) -> dict[str, Any]:
    """One proposal: what it changes, its window, its tally so far (or final) and its status."""
    out: dict[str, Any] = {
        "id": p.pid,
        "proposer": crypto.address(p.proposer),
        "parameter": p.name,
        "value": p.value,
        "memo": p.memo,
        "created_at": p.created_at,
        "voting_ends": p.voting_ends,
        "executes_at": p.executes_at,
        "deposit": p.deposit,
        "quorum_bps": p.quorum_bps,
        "threshold_bps": p.threshold_bps,
        "snapshot_stake": p.snapshot_total,
        "yes": p.yes,
        "no": p.no,
        "abstain": p.abstain,
        "voters": len(p.votes) if p.status == VOTING else p.voters,
        "status": p.status,
        "outcome": p.outcome,
        "height": state.height,
    }
    if votes:
        out["votes"] = [
            {"voter": crypto.address(k), "choice": CHOICES[c], "weight": p.carried(k), "height": h}
            for k, (c, h) in sorted(p.votes.items())
        ]
    return out


def proposals(state: State) -> list[dict[str, Any]]:
    """Every proposal, newest first."""
    return [proposal_view(state, p) for _, p in sorted(state.governance.proposals.items(), reverse=True)]


def governance_view(state: State) -> dict[str, Any]:
    """The rules proposals run under now, and each governable parameter's value and bounds."""
    p = state.params
    params = {name: {"value": getattr(p, name), "min": lo, "max": hi} for name, (lo, hi) in NETWORK_PARAMS.items()}
    hp = state.governance.default_hp
    for name in HP_NAMES:
        lo, hi = hp.bounds(name, 0)
        params[DEFAULT_PREFIX + name] = {"value": int(getattr(hp, name)), "min": lo, "max": hi}
    return {
        "deposit": p.gov_deposit,
        "voting_period": p.gov_voting_period,
        "execution_delay": p.gov_execution_delay,
        "quorum_bps": p.gov_quorum_bps,
        "threshold_bps": p.gov_threshold_bps,
        "open_proposals": [x.pid for x in state.governance.open()],
        "parameters": dict(sorted(params.items())),
    }
