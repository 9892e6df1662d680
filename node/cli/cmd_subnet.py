"""`tensornet subnet list|show|metagraph`: read subnets from a running node."""

from __future__ import annotations

import typer

from node.cli.app import JsonOption, NodeOption, emit
from node.cli.submit import fetch
from protocol import crypto

subnet_app = typer.Typer(help="Create, register on and inspect subnets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(subnet_app, name="subnet")


@subnet_app.command("list")
def list_(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Every subnet with its owner, size, tempo, lifecycle score and registration immunity.

    The score is the moving average of the subnet's stake; at the subnet limit a new subnet replaces
    the lowest-scored subnet that is past its immunity (spec/economics.md §1).
    """
    rows = fetch(node, "/subnets")
    view = [
        {
            **{k: r[k] for k in ("netuid", "name", "owner", "neurons", "tempo", "burn", "score")},
            "immunity": f"until {r['immune_until']}" if r["immune"] else "none",
        }
        for r in rows
    ]
    emit(rows if as_json else view, as_json, title="subnets")


@subnet_app.command("deregistered")
def deregistered(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Subnets removed to make room for new ones: when, by whom, and what was paid out or returned."""
    rows = fetch(node, "/subnets/deregistered")
    emit(rows, as_json, title="deregistered subnets")


@subnet_app.command("show")
def show(netuid: int, node: NodeOption = None, as_json: JsonOption = False) -> None:
    """One subnet's settings, lifecycle (score, immunity), concentration and hyperparameters."""
    obj = fetch(node, f"/subnets/{netuid}")
    if as_json:
        emit(obj, True)
        return
    emit({k: v for k, v in obj.items() if k not in ("hyperparameters", "concentration")}, False,
         title=f"subnet {netuid}")
    emit(obj["concentration"], False, title="concentration (entities = hotkey owner coldkeys)")
    emit(obj["hyperparameters"], False, title="hyperparameters")


@subnet_app.command("metagraph")
def metagraph(netuid: int, node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Per uid: hotkey, stake, incentive, dividends, emission, permit."""
    rows = fetch(node, f"/subnets/{netuid}/metagraph")
    if as_json:
        emit(rows, True)
        return
    view = [
        {
            "uid": uid,
            "hotkey": crypto.address(bytes.fromhex(r["hotkey"]))[:14] + "…",
            "stake": r.get("stake"),
            "incentive": r.get("incentive"),
            "dividends": r.get("dividends"),
            "emission": r.get("emission"),
            "permit": r.get("validator_permit"),
        }
        for uid, r in enumerate(rows)
    ]
    emit(view, False, title=f"subnet {netuid} metagraph")
