"""`tensornet testnet netns ...`: a testnet with one network namespace per node (root; spec/testnet.md §6)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli.app import JsonOption, emit, stdout_console
from node.errors import CliError

netns_app = typer.Typer(help="One network namespace per node on this Linux host (needs root).",
                        no_args_is_help=True)

DirOption = Annotated[Path, typer.Option("--dir", help="Testnet directory (homes, logs, netns.json).")]
HostsArg = Annotated[list[str], typer.Argument(help="Hosts by name (node0, late0) or index (0, 1, ...).")]
DelayOption = Annotated[str | None, typer.Option("--delay", help="Delay per hop, e.g. 20ms (netem, else a relay).")]
LossOption = Annotated[str | None, typer.Option("--loss", help="Loss per hop, e.g. 1% (netem, else a relay).")]
RoundOption = Annotated[int, typer.Option(
    "--round-ms", help="Validators' min_round_delay_ms (all nodes share this host's cores).")]
DEFAULT_DIR = Path("./testnet-netns")


def register(testnet_app: typer.Typer) -> None:
    testnet_app.add_typer(netns_app, name="netns")


def _line(obj: Any) -> None:
    typer.echo(json.dumps(obj, separators=(",", ":")))


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@netns_app.command("up")
def up_cmd(
    hosts: Annotated[int, typer.Option("--hosts", help="Validator hosts, one namespace each.")] = 5,
    directory: DirOption = DEFAULT_DIR,
    delay: DelayOption = None,
    loss: LossOption = None,
    round_ms: RoundOption = 200,
    as_json: JsonOption = False,
) -> None:
    """Create a bridge and HOSTS namespaces, write a genesis and homes, start a node in each; leave it running."""
    from node.testnet.netns import up  # start-up time: libp2p, httpx

    state = up(directory.absolute(), hosts, delay, loss, round_ms=round_ms)
    rows = [{"name": h["name"], "ns": h["ns"], "ip": h["ip"], "api": h["api"], "pid": h["pid"]}
            for h in state["hosts"]]
    if as_json:
        _line({"hosts": rows, "bridge": state["bridge"], "subnet": state["subnet"] + ".0/24",
               "impairment": state["impairment"], "directory": str(directory.absolute())})
        return
    emit(rows, False, title=f"netns testnet {state['prefix']} on {state['subnet']}.0/24")
    stdout_console().print(f"delay/loss: {state['impairment']}; "
                           f"stop with: tensornet testnet netns down --dir {directory}")


@netns_app.command("down")
def down_cmd(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Kill every node and remove every namespace, veth and bridge recorded in --dir."""
    from node.testnet.netns import down  # start-up time: libp2p, httpx

    emit(down(directory.absolute()), as_json, title="removed")


@netns_app.command("status")
def status_cmd(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Each host: namespace, IP, process state, height, peers, state root."""
    from node.testnet.netns import status  # start-up time: libp2p, httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    emit(status(directory.absolute()), as_json, title="netns hosts")


PERTURBATIONS = {
    "kill": "SIGKILL these hosts' nodes (`start` brings them back from their homes).",
    "pause": "SIGSTOP these hosts' nodes (`cont` resumes them).",
    "cont": "SIGCONT paused hosts.",
    "start": "Restart killed hosts from their homes (same namespace, IP and keys).",
}


def _perturbation(action: str, doc: str) -> None:
    """One command per action; they differ only in the action and its help."""

    def command(names: HostsArg, directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
        from node.testnet.netns import perturb  # start-up time: libp2p, httpx

        emit(perturb(directory.absolute(), names, action), as_json, title=f"{action} (state before)")

    command.__doc__ = doc
    netns_app.command(action)(command)


for _action, _doc in PERTURBATIONS.items():
    _perturbation(_action, _doc)


@netns_app.command("partition")
def partition_cmd(names: HostsArg, directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Cut these hosts off from all the others, both ways (blackhole routes); `heal` undoes it."""
    from node.testnet.netns import partition  # start-up time: libp2p, httpx

    emit(partition(directory.absolute(), names), as_json, title="partition")


@netns_app.command("heal")
def heal_cmd(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Remove every partition."""
    from node.testnet.netns import heal  # start-up time: libp2p, httpx

    emit(heal(directory.absolute()), as_json, title="healed")


@netns_app.command("join")
def join_cmd(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Add a late host: a new namespace whose node joins through node0 (`node join`) and syncs."""
    from node.testnet.netns import join  # start-up time: libp2p, httpx

    h = join(directory.absolute())
    emit({k: h[k] for k in ("name", "ns", "ip", "api", "pid")}, as_json, title="joined")


@netns_app.command("check")
def check_cmd(
    directory: DirOption = DEFAULT_DIR,
    hosts: Annotated[int, typer.Option("--hosts", help="Hosts, when --dir holds no running netns testnet.")] = 5,
    kill: Annotated[int, typer.Option("--kill", help="Hosts to SIGKILL (the rest must keep committing).")] = 1,
    pause: Annotated[int, typer.Option("--pause", help="Hosts to SIGSTOP, then SIGCONT (0: skip).")] = 0,
    partition: Annotated[int, typer.Option("--partition", help="Hosts cut from the rest (0: skip).")] = 2,
    delay: DelayOption = None,
    loss: LossOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 300.0,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the network it created running.")] = False,
    round_ms: RoundOption = 200,
    as_json: JsonOption = False,
) -> None:
    """Kill K hosts, pause some, partition P hosts, heal, add a late host; exit 0 only if every property held.

    Uses the netns testnet in --dir if there is one, else creates one with --hosts and removes it after.
    """
    from node.testnet.netns_check import Check, CheckSpec  # start-up time: libp2p, httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    spec = CheckSpec(hosts=hosts, kill=kill, pause=pause, partition=partition, delay=delay, loss=loss,
                     timeout_s=timeout, keep=keep, round_ms=round_ms)
    res = Check(directory.absolute(), spec, say=_warn).run()
    if as_json:
        _line(res)
    else:
        for p in res["phases"]:
            stdout_console().print(f"{p['phase']}: {json.dumps({k: v for k, v in p.items() if k != 'phase'})}")
        verdict = "[green]PASSED[/]" if res["passed"] else f"[bold red]FAILED[/]: {res['failure']}"
        stdout_console().print(f"{verdict} in {res['seconds']} s; roots agree: {res['roots_agree']}; "
                               f"delay/loss: {res['impairment']}")
    if not res["passed"]:
        raise CliError(res["failure"])
