"""`tensornet chain supply`: audit a running node's supply from outside (spec/economics.md §7)."""

from __future__ import annotations

from typing import Any

import typer

from node.cli.app import JsonOption, NodeOption, emit
from node.cli.submit import fetch
from node.errors import CliError
from protocol.state.supply import Supply

chain_app = typer.Typer(help="Audit the chain: where every issued unit is.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(chain_app, name="chain")


def check_supply(obj: dict[str, Any]) -> None:
    """Recompute the conservation identity from the node's figures (protocol/state/supply.py, the same function
    the node's invariant check uses), so the audit trusts the node's numbers, not its verdict."""
    try:
        fields = {k: int(obj[k]) for k in Supply.__slots__}
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f"the node's /supply answer lacks or garbles {exc}") from None
    sup = Supply(**fields)
    if not sup.balanced or not obj.get("balanced"):
        raise CliError(
            f"supply does not balance at height {sup.height}: issued {sup.issued} units, held {sup.held} units "
            f"(balances + stake + escrow + deposits + pending + burned)"
        )


@chain_app.command("supply")
def supply(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Issued, burned (fees among it), balances, stake, escrow, deposits and pending emission, checked.

    Exits 1 if issued != balances + stake + escrow + deposits + pending + burned, recomputed here from the
    node's figures."""
    obj = fetch(node, "/supply")
    check_supply(obj)
    if as_json:
        emit(obj, True)
        return
    names = ("issued", "balances", "stake", "escrow", "deposits", "pending", "burned", "fees_burned", "held")
    rows = [{"": k, "tokens": obj["tokens"][k], "units": obj[k]} for k in names]
    emit(rows, False, title=f"supply at height {obj['height']}: {obj['identity']} (balanced)")
