"""`tensornet testnet up|down|logs|clean|gen`: a whole network on one machine, or homes for many."""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from node.cli.app import JsonOption, emit, stderr_console, stdout_console
from node.cli.cmd_netns import register as register_netns
from node.client.amounts import parse_amount
from node.errors import CliError, NodeError

testnet_app = typer.Typer(help="Start or join a multi-machine testnet.", no_args_is_help=True)

DirOption = Annotated[Path, typer.Option("--dir", help="Testnet directory (keys, homes, logs, PIDs).")]
DEFAULT_DIR = Path("./testnet")
# Governance windows in heights; short defaults so a proposal passes in about a minute (spec/testnet.md §1).
VotingPeriodOption = Annotated[int, typer.Option(
    "--gov-voting-period", help="Heights a proposal takes votes (genesis default 7200).")]
ExecutionDelayOption = Annotated[int, typer.Option(
    "--gov-execution-delay", help="Heights between the tally and a passed proposal's execution (default 100).")]


def register(app: typer.Typer) -> None:
    register_netns(testnet_app)
    app.add_typer(testnet_app, name="testnet")


# --- live view and report ------------------------------------------------------------------------


def _view(status: Any) -> Group:
    nodes = Table(title=f"tensornet testnet: {status.phase} ({status.elapsed_s:.0f}s)", title_justify="left")
    for col in ("node", "height", "round", "peers", "commit p50 ms", "state root"):
        nodes.add_column(col)
    for n in status.nodes:
        lat = n.get("latency_ms")
        nodes.add_row(n["name"], str(n["height"]), str(n["round"]), str(n["peers"]),
                      "-" if lat is None else f"{lat:.0f}", n["state_root"])
    subnets = Table(title="subnets", title_justify="left")
    for col in ("netuid", "task", "epochs seen", "paid epochs counted", "top earners last epoch (role uid: tokens)",
                "split owner/miners/validators"):
        subnets.add_column(col)
    for s in status.subnets:
        top = ", ".join(f"{role} {uid}: {units / 1e9:.3f}" for role, uid, units in s["top"]) or "-"
        sp = s["split"]
        subnets.add_row(str(s["netuid"]), s["task"], str(s["epochs_seen"]), f"{s['counted']}/{s['want']}", top,
                        f"{sp['owner']:.3f} / {sp['miners']:.3f} / {sp['validators']:.3f}")
    return Group(nodes, subnets, *[escape(n) for n in status.notes])


def _render_result(res: dict[str, Any]) -> None:
    console = stdout_console()
    for s in res["subnets"]:
        t = Table(title=f"subnet {s['netuid']} ({s['task']}): {s['epochs_counted']} paid epochs measured",
                  title_justify="left")
        # incentive and dividends are the latest epoch's; the last column sums what the measured epochs
        # paid, which can differ while the validator is still sampling miners early on
        for col in ("uid", "role", "hotkey", "stake", "incentive", "dividends", "paid in measured epochs"):
            t.add_column(col, justify="right" if col not in ("role", "hotkey") else "left")
        for n in s["neurons"]:
            role = n["role"] + (f" ({n['fault']})" if n.get("fault") else "")
            t.add_row(str(n["uid"]), role, n["hotkey"][:16] + "…", f"{n['stake'] / 1e9:.4f}",
                      f"{n['incentive']:.4f}", f"{n['dividends']:.4f}", f"{n['emission'] / 1e9:.4f}")
        console.print(t)
        sp, u = s["emission_split"], s["emission_units"]
        console.print(f"  emission split measured on chain: owner {sp['owner']:.2%} ({u['owner'] / 1e9:.3f}), "
                      f"miners {sp['miners']:.2%} ({u['miners'] / 1e9:.3f}), "
                      f"validators {sp['validators']:.2%} ({u['validators'] / 1e9:.3f})")
        c = s.get("concentration")
        if c:
            console.print(f"  concentration: nakamoto {c['nakamoto']} of {c['validator_entities']} validator "
                          f"entities, top-5 stake {c['top5_stake_share']:.1%}, "
                          f"top-5 emission {c['top5_emission_share']:.1%}")
    net = res.get("concentration")
    if net:
        k = net["committee"]
        console.print(f"committee concentration: nakamoto {k['nakamoto']} of {k['entities']} entities "
                      f"(1/3 of the stake stops commits), top-5 stake {k['top5_stake_share']:.1%}; network "
                      f"top-5 emission share {net['top5_emission_share']:.1%}")
    agree = "[green]agree[/]" if res["state_roots_agree"] else "[bold red]DISAGREE[/]"
    console.print(f"state roots {agree} at height {res['height']} ({res['state_root'][:16]}…); "
                  f"commit latency p50 {res['commit_latency_ms_p50']} ms; {res['seconds']} s in all")
    for part, what in res["ran"].items():
        console.print(f"  {part}: {escape(what)}")


class _Progress:
    """Rich live view on a terminal; otherwise one plain line every few seconds on stderr."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self.live: Live | None = None
        self.last_line = 0.0
        if self.console.is_terminal:
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()

    def __call__(self, status: Any) -> None:
        if self.live is not None:
            self.live.update(_view(status), refresh=True)
            return
        now = time.monotonic()
        if now - self.last_line < 5 and status.phase == getattr(self, "_phase", None):
            return
        self._phase = status.phase
        self.last_line = now
        heights = [n["height"] for n in status.nodes]
        epochs = " ".join(f"subnet{s['netuid']}={s['counted']}/{s['want']}" for s in status.subnets)
        print(f"[{status.elapsed_s:5.0f}s] {status.phase}; heights {heights}; paid epochs {epochs}",
              file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


# --- commands ------------------------------------------------------------------------------------


@testnet_app.command("up")
def up(
    validators: Annotated[int, typer.Option("--validators", help="Consensus validator nodes.")] = 4,
    subnets: Annotated[int, typer.Option("--subnets", help="Subnets (tasks alternate compute, text).")] = 2,
    miners: Annotated[int, typer.Option("--miners", help="Miners per subnet.")] = 3,
    subnet_validators: Annotated[int, typer.Option("--subnet-validators", help="Validators per subnet.")] = 1,
    epochs: Annotated[int, typer.Option("--epochs", help="Paid epochs to measure on every subnet.")] = 2,
    cheaters: Annotated[
        int, typer.Option("--cheaters", help="Miners per subnet that corrupt every answer (a test hook).")
    ] = 0,
    tempo: Annotated[int, typer.Option("--tempo", help="Subnet tempo in heights.")] = 12,
    price: Annotated[
        str, typer.Option("--price", help="Tokens per paid query every miner sells (0: no paid queries).")
    ] = "0",
    directory: DirOption = DEFAULT_DIR,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 300.0,
    detach: Annotated[bool, typer.Option("--detach", help="Leave the network running (stop: testnet down).")] = False,
    gov_voting_period: VotingPeriodOption = 1800,
    gov_execution_delay: ExecutionDelayOption = 30,
    as_json: JsonOption = False,
) -> None:
    """Start a whole network here, run EPOCHS paid epochs per subnet, report, check roots, stop.

    Exits 0 only if every process stayed up, every subnet paid its epochs and every node has the
    same state root; --json prints one JSON object on the last line.
    """
    from node.testnet.local import Testnet, TestnetSpec  # start-up time: libp2p, httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll request otherwise
    spec = TestnetSpec(directory=directory.absolute(), validators=validators, subnets=subnets, miners=miners,
                       subnet_validators=subnet_validators, epochs=epochs, tempo=tempo, timeout_s=timeout,
                       cheaters=cheaters, price=parse_amount(price), gov_voting_period=gov_voting_period,
                       gov_execution_delay=gov_execution_delay)
    progress = _Progress()
    net = Testnet(spec, on_status=progress)

    def on_signal(signum: int, _frame: object) -> None:  # SIGTERM/SIGHUP: unwind, so `run` stops the children
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        res = net.run(detach=detach)
    except NodeError as exc:
        if as_json:
            typer.echo(json.dumps({"state_roots_agree": None, "error": str(exc), "ran": net.ran,
                                   "seconds": round(net.live.elapsed_s, 1)}, separators=(",", ":")))
        raise
    finally:
        progress.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    res["detached"] = detach
    where = {n["name"]: {"api": n["api"], "multiaddr": n["multiaddr"]} for n in net.plan.nodes}
    res["nodes"] = [{**row, **where.get(row.get("name"), {})} for row in res.get("nodes", [])]
    if as_json:
        typer.echo(json.dumps(res, separators=(",", ":")))
    else:
        _render_result(res)
        if detach:
            console = stdout_console()
            for name, n in where.items():  # where a user points curl, the CLI's --node, or a second machine
                console.print(f"  {name}: api {n['api']}  p2p {n['multiaddr']}")
            console.print(f"left running; stop it with: tensornet testnet down --dir {directory}")
    if not res["state_roots_agree"]:
        raise CliError(res.get("error", "state roots disagree"))


@testnet_app.command("down")
def down_cmd(
    directory: DirOption = DEFAULT_DIR,
    deadline: Annotated[float, typer.Option("--deadline", help="Seconds between SIGTERM and SIGKILL.")] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Stop a testnet left running by `up --detach` (SIGTERM, then SIGKILL after the deadline)."""
    from node.testnet.local import down  # start-up time: libp2p, httpx

    emit(down(directory.absolute(), deadline), as_json, title="stopped")


@testnet_app.command("clean")
def clean_cmd(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Stop whatever still runs, then delete the testnet directory."""
    from node.testnet.local import clean  # start-up time: libp2p, httpx

    emit(clean(directory.absolute()), as_json, title="cleaned")


@testnet_app.command("status")
def status_cmd(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Which of the testnet's processes still run."""
    from node.testnet.local import read_pids, running  # start-up time: libp2p, httpx

    live = {e["name"] for e in running(directory.absolute())}
    emit([{"name": e["name"], "role": e["role"], "pid": e["pid"], "running": e["name"] in live}
          for e in read_pids(directory.absolute())], as_json, title="processes")


@testnet_app.command("logs")
def logs_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Process names (node0, s1-miner-0, ...).")] = None,
    directory: DirOption = DEFAULT_DIR,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Last lines of each log.")] = 20,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Show the testnet's process logs."""
    from node.testnet.local import follow, log_files, tail_file  # start-up time: libp2p, httpx

    files = log_files(directory.absolute(), names)
    for f in files:
        typer.echo(f"==> {f.stem} ({f}) <==")
        typer.echo(tail_file(f, lines))
    if follow_:
        try:
            for name, line in follow(files):
                typer.echo(f"{name}: {line}")
        except KeyboardInterrupt:
            pass


@testnet_app.command("gen")
def gen(
    out: Annotated[Path, typer.Option("--out", help="Where to write genesis.json and one home per host.")],
    hosts: Annotated[str, typer.Option("--hosts", help="Comma-separated IPs, one validator node each.")],
    chain_id: Annotated[str, typer.Option("--chain-id", help="Chain id.")] = "tensornet-testnet",
    p2p_port: Annotated[int, typer.Option("--p2p-port", help="P2P TCP port (base, when hosts repeat).")] = 30400,
    api_port: Annotated[int, typer.Option("--api-port", help="HTTP API port (base, when hosts repeat).")] = 26700,
    api_bind: Annotated[str, typer.Option(
        "--api-bind", help="Address the HTTP API listens on. It accepts transactions: keep it private "
        "(127.0.0.1) unless a firewall guards it; 0.0.0.0 = every interface.")] = "127.0.0.1",
    gov_voting_period: VotingPeriodOption = 1800,
    gov_execution_delay: ExecutionDelayOption = 30,
    as_json: JsonOption = False,
) -> None:
    """Write a genesis and one node home per host, ready to copy to the machines (spec/testnet.md).

    Every key is drawn at random; the homes (0700) hold each validator's keys: copy each to its host only."""
    from node.testnet.gen import VALIDATOR_BALANCE, check_gov_windows, generate  # start-up time: libp2p, httpx

    host_list = [h.strip() for h in hosts.split(",") if h.strip()]
    if not host_list:
        raise CliError("--hosts needs at least one IP")
    if (out / "genesis.json").exists():
        raise CliError(f"{out} already holds a genesis; choose another --out")
    try:
        ipaddress.ip_address(api_bind)
    except ValueError:
        raise CliError(f"--api-bind {api_bind!r} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)") from None
    check_gov_windows(gov_voting_period, gov_execution_delay)
    plans, genesis = generate(out, hosts=host_list, chain_id=chain_id, p2p_base=p2p_port, api_base=api_port,
                              api_bind=api_bind, validator_balance=VALIDATOR_BALANCE,
                              genesis_params={"gov_voting_period": gov_voting_period,
                                              "gov_execution_delay": gov_execution_delay})
    rows = [{"node": p.name, "home": str(p.home), "host": p.host, "multiaddr": p.multiaddr, "api": p.api,
             "run": f"tensornet node run --home {p.name}"} for p in plans]
    emit({"genesis": str(genesis), "nodes": rows} if as_json else rows, as_json, title=f"testnet {chain_id}")
    if not as_json:
        stdout_console().print(f"genesis: {genesis}; copy each home to its host, then run the command shown there.")

