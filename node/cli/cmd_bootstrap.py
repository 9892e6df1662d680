"""`tensornet bootstrap`: run a discovery-only bootstrap node (logic in p2pnet.bootstrap)."""

from __future__ import annotations

from typing import Annotated

import typer

from node.cli.app import HomeOption, JsonOption
from node.client.home import resolve_home


def register(app: typer.Typer) -> None:
    app.command("bootstrap", help="Run a bootstrap node that new peers dial first.")(bootstrap)


def bootstrap(
    home: HomeOption = None,
    listen: Annotated[str, typer.Option("--listen", help="Listen multiaddr.")] = "/ip4/0.0.0.0/tcp/4001",
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Another bootstrap node's full multiaddr (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print this node's full multiaddr, then serve discovery until SIGINT/SIGTERM (exit 0)."""
    import trio  # start-up time: trio, libp2p

    from p2pnet.bootstrap import run_bootstrap

    trio.run(lambda: run_bootstrap(resolve_home(home), listen, as_json=as_json, bootstrap=list(peer or [])))
