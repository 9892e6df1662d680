"""`tensornet gov propose|vote|list|show|params`: on-chain governance through a node's API.

A proposal sets one network parameter (or a default hyperparameter of new subnets, `default.<name>`) and
locks the deposit; votes are yes / no / abstain, weighted by the voter's stake when the proposal was made.
spec/economics.md §2 is normative. Both transactions are signed by the wallet's coldkey, with the fee shown
first and the --tip/--fee flags of every signing command (node/feeflags.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli import HomeOption, JsonOption, PasswordFileOption, WalletOption, emit
from node.feeflags import MaxFeeOption, TipOption

gov_app = typer.Typer(help="Propose and vote on network parameter changes.", no_args_is_help=True)
NodeOption = Annotated[str | None, typer.Option("--node", help="Node API URL (default $TENSORNET_NODE).")]
CHOICE_CODES = {"no": 0, "yes": 1, "abstain": 2}


def register(app: typer.Typer) -> None:
    app.add_typer(gov_app, name="gov")


def _send(node: str | None, home: Path | None, wallet: str, password_file: Path | None, call: object,
          as_json: bool, tip: str, max_fee: str | None) -> None:
    from node.cmd_tx import _cold, _submit

    _submit(node, _cold(home, wallet, password_file), call, as_json, tip, max_fee)


@gov_app.command("propose")
def propose(
    param: Annotated[str, typer.Option("--param", help="Parameter name (see `gov params`), e.g. max_subnets.")],
    value: Annotated[int, typer.Option("--value", help="New value (an integer; amounts in units).")],
    memo: Annotated[str, typer.Option("--memo", help="Why (at most 256 characters).")] = "",
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a parameter change; the deposit is locked until the tally."""
    from protocol.messages import Propose

    _send(node, home, wallet, password_file, Propose(param, value, memo), as_json, tip, max_fee)


@gov_app.command("vote")
def vote(
    proposal: Annotated[int, typer.Option("--proposal", help="Proposal id.")],
    choice: Annotated[str, typer.Option("--choice", help="yes, no or abstain.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Vote once on an open proposal, weighted by your coldkey's stake at its creation."""
    from node.errors import NodeError
    from protocol.messages import Vote

    if choice not in CHOICE_CODES:
        raise NodeError(f"--choice must be yes, no or abstain, got {choice!r}")
    _send(node, home, wallet, password_file, Vote(proposal, CHOICE_CODES[choice]), as_json, tip, max_fee)


@gov_app.command("list")
def list_(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Every proposal, newest first, with its tally and status."""
    from node.client import NodeClient

    with NodeClient(node) as c:
        rows = c.get("/proposals")
    view = [
        {k: r[k] for k in ("id", "parameter", "value", "status", "yes", "no", "abstain", "voting_ends", "executes_at")}
        for r in rows
    ]
    emit(rows if as_json else view, as_json, title="proposals")


@gov_app.command("show")
def show(proposal: int, node: NodeOption = None, as_json: JsonOption = False) -> None:
    """One proposal with its votes (while voting) and outcome."""
    from node.client import NodeClient

    with NodeClient(node) as c:
        emit(c.get(f"/proposals/{proposal}"), as_json, title=f"proposal {proposal}")


@gov_app.command("params")
def params(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """The governance rules now in force and every governable parameter with its value and bounds."""
    from node.client import NodeClient

    with NodeClient(node) as c:
        g = c.get("/governance")
    if as_json:
        emit(g, True)
        return
    emit({k: v for k, v in g.items() if k != "parameters"}, False, title="governance")
    emit([{"parameter": k, **v} for k, v in g["parameters"].items()], False, title="governable parameters")
