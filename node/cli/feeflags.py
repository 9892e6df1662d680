"""The fee flags of every command that signs (`--tip`, `--fee MAX`), the fee line it shows before signing,
and the fee figures it reports (spec/economics.md §6).

A command turns its flags into one `FeePolicy` with `policy()` and hands it to the NodeClient (directly, or
through a SubnetClient) that signs, so every signature, however deep in the command, is quoted, shown and
capped the same way; `report()` sums what that client sent for the command's --json output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from node.client.amounts import parse_amount
from protocol.economics.emission import decimal_tokens

if TYPE_CHECKING:  # node.client.api_client pulls in httpx: imported when a command runs, not when the CLI starts
    from node.client.api_client import FeePolicy, Quote

TipOption = Annotated[str, typer.Option("--tip", help="Tokens added to each fee (burned too): buys mempool priority.")]
MaxFeeOption = Annotated[
    str | None, typer.Option("--fee", help="The most a transaction may burn in fees (tokens); refuse to sign above.")
]


def policy(tip: str = "0", max_fee: str | None = None, as_json: bool = False) -> FeePolicy:
    """The FeePolicy for `--tip TIP --fee MAX`; the fee line goes to stderr unless the output is --json."""
    from node.client.api_client import FeePolicy  # start-up time: httpx

    return FeePolicy(parse_amount(tip), None if max_fee is None else parse_amount(max_fee), None if as_json else show)


def show(q: Quote, balance: int) -> None:
    """'<kind>: fee 0.0003 token (300000 units); balance 5 -> 4.9997 after the fee', on stderr."""
    typer.echo(f"{q.tx.call.KIND}: fee {decimal_tokens(q.fee)} token ({q.fee} units); balance "
               f"{decimal_tokens(balance)} -> {decimal_tokens(max(balance - q.fee, 0))} after the fee", err=True)


def report(sent: list[Quote]) -> dict[str, int]:
    """The fees (tips included) and tips of the transactions a command signed, in units."""
    return {"fee": sum(q.fee for q in sent), "tip": sum(q.tx.tip for q in sent)}
