"""`tensornet validator run`: score a subnet's miners over libp2p and set (or commit and reveal) weights."""

from __future__ import annotations

from typing import Annotated

import typer

from node.cli.app import (
    HomeOption,
    HotkeyOption,
    JsonOption,
    NodeOption,
    PasswordFileOption,
    WalletOption,
    coldkey_when_needed,
    emit,
    load_hotkey,
)
from node.client.amounts import parse_amount
from node.client.home import resolve_home
from node.errors import CliError

validator_app = typer.Typer(help="Score a subnet's miners and set weights.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(validator_app, name="validator")


@validator_app.command("run")
def run(
    subnet: Annotated[int, typer.Option("--subnet", help="Netuid of the subnet to validate.")],
    wallet: WalletOption = "default",
    hotkey: HotkeyOption = "default",
    home: HomeOption = None,
    node: NodeOption = None,
    interval_s: Annotated[float, typer.Option("--interval-s", help="Seconds between weight submissions.")] = 60.0,
    step_s: Annotated[float, typer.Option("--step-s", help="Seconds between rounds of queries.")] = 5.0,
    sample: Annotated[int, typer.Option("--sample", help="Miners queried per round.")] = 16,
    stake: Annotated[str, typer.Option("--stake", help="Stake (tokens) the hotkey should hold; topped up.")] = "100",
    max_burn: Annotated[str, typer.Option("--max-burn", help="Most to pay for registration (tokens).")] = "10",
    task_config: Annotated[
        list[str] | None, typer.Option("--task-config", help="Task option key=value (repeatable).")
    ] = None,
    query_timeout_s: Annotated[
        float | None, typer.Option("--query-timeout-s", help="Deadline per query (default: the task's).")
    ] = None,
    listen_host: Annotated[str, typer.Option("--listen-host", help="IP of the validator's libp2p host.")] = "127.0.0.1",
    password_file: PasswordFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register and stake if needed, then query, score and set weights until Ctrl-C."""
    import trio  # start-up time: trio, libp2p, torch

    from subnets.miner import parse_kv
    from subnets.validator import Validator, ValidatorConfig

    if sample < 1 or interval_s <= 0 or step_s <= 0:
        raise CliError("--sample must be >= 1, --interval-s and --step-s > 0")
    root = resolve_home(home)
    hot = load_hotkey(root, wallet, hotkey)
    cfg = ValidatorConfig(
        home=root,
        wallet=wallet,
        hotkey=hotkey,
        netuid=subnet,
        node=node,
        interval_s=interval_s,
        step_s=step_s,
        sample=sample,
        stake=parse_amount(stake),
        max_burn=parse_amount(max_burn),
        task_config=parse_kv(task_config or [], 1)[0],
        listen_host=listen_host,
        timeout_s=query_timeout_s,
    )
    v = Validator(cfg, coldkey_when_needed(root, wallet, password_file), hot)
    v.setup()
    summary = trio.run(v.run)
    emit(summary, as_json, title=f"validator, subnet {subnet}")
