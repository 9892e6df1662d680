"""`tensornet miner run|status`: serve a subnet's task from local GPUs (one worker process each), or CPUs.

The heavy parts (torch, libp2p) load inside the commands, so `tensornet --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from node.cli.app import (
    HomeOption,
    JsonOption,
    NodeOption,
    PasswordFileOption,
    WalletOption,
    coldkey_when_needed,
    emit,
)
from node.client.amounts import parse_amount
from node.client.home import resolve_home
from node.errors import CliError

miner_app = typer.Typer(help="Serve a subnet's task from local GPUs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(miner_app, name="miner")


@miner_app.command("run")
def run(
    subnet: Annotated[int, typer.Option("--subnet", help="Netuid of the subnet to mine.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    node: NodeOption = None,
    gpus: Annotated[str, typer.Option("--gpus", help="all, none, or GPU indices such as 0,1.")] = "all",
    cpu_workers: Annotated[int, typer.Option("--cpu-workers", help="Workers when no GPU is used.")] = 1,
    listen_host: Annotated[str, typer.Option("--listen-host", help="IP the workers listen on.")] = "127.0.0.1",
    announce_host: Annotated[
        str | None, typer.Option("--announce-host", help="IP announced on chain (default: the listen host).")
    ] = None,
    base_port: Annotated[int, typer.Option("--base-port", help="Worker i listens on P+i (0: any free port).")] = 0,
    task_config: Annotated[
        list[str] | None, typer.Option("--task-config", help="Task option key=value (repeatable).")
    ] = None,
    miner_config: Annotated[
        list[str] | None,
        typer.Option("--miner-config", help="Model option key=value, or INDEX:key=value for one worker."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help="Test hook INDEX:crash-once|corrupt-answer (drills and tests only)."),
    ] = None,
    max_burn: Annotated[str, typer.Option("--max-burn", help="Most to pay per registration (tokens).")] = "10",
    query_timeout_s: Annotated[
        float | None, typer.Option("--query-timeout-s", help="Model time per query (default: the task's).")
    ] = None,
    rate: Annotated[float, typer.Option("--rate", help="Queries per second allowed per validator.")] = 2.0,
    burst: Annotated[int, typer.Option("--burst", help="Burst of queries allowed per validator.")] = 10,
    permit_refresh_s: Annotated[float, typer.Option("--permit-refresh-s", help="Validator list refresh.")] = 10.0,
    price: Annotated[
        str, typer.Option("--price", help="Tokens per paid query from clients (0: serve validators only).")
    ] = "0",
    max_waiting: Annotated[
        int, typer.Option("--max-waiting", help="Queries queued per worker; paid first, free shed when full.")
    ] = 8,
    status_interval_s: Annotated[float, typer.Option("--status-interval-s", help="Status log period.")] = 10.0,
    password_file: PasswordFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register one hotkey per worker, start the workers, restart crashed ones, stop on Ctrl-C."""
    import trio  # start-up time: trio, libp2p, torch

    from subnets.miner import HostConfig, Supervisor, parse_faults, parse_kv, plan_devices

    root = resolve_home(home)
    devices = plan_devices(gpus, cpu_workers)
    n = len(devices)
    cfg = HostConfig(
        home=root,
        wallet=wallet,
        netuid=subnet,
        node=node,
        devices=devices,
        listen_host=listen_host,
        announce_host=announce_host,
        base_port=base_port,
        task_config=parse_kv(task_config or [], 1)[0],
        miner_configs=parse_kv(miner_config or [], n),
        faults=parse_faults(fault or [], n),
        max_burn=parse_amount(max_burn),
        status_every_s=status_interval_s,
        deadline_s=query_timeout_s,
        rate_per_s=rate,
        burst=burst,
        permit_refresh_s=permit_refresh_s,
        price=parse_amount(price),
        max_waiting=max_waiting,
    )
    sup = Supervisor(cfg, coldkey_when_needed(root, wallet, password_file))
    sup.prepare()
    summary = trio.run(sup.run)
    if as_json:
        emit(summary, True)
    else:
        emit(summary["workers"], False, title=f"miner host, subnet {subnet}")


@miner_app.command("status")
def status(
    subnet: Annotated[int, typer.Option("--subnet")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the last status a running (or stopped) miner host wrote."""
    path = Path(resolve_home(home)) / "miners" / wallet / f"sn{subnet}" / "status.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(f"no miner status at {path}: has `tensornet miner run --subnet {subnet}` run?") from None
    emit(summary if as_json else summary["workers"], as_json, title=f"miner host, subnet {subnet}")
