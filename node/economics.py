"""JSON views of the chain's economics for the HTTP API: subnet lifecycle (score, immunity, deregistrations).

Read-only; each function takes the State between commits and returns plain JSON-ready values
(addresses as `tn...` strings). spec/economics.md defines the figures.
"""

from __future__ import annotations

from typing import Any

from protocol import crypto
from protocol.lifecycle import Deregistration
from protocol.state import State, Subnet


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
