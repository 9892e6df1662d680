"""`tensornet fuzz ...`: list targets, fuzz one, capture a seed corpus, fuzz a live node, replay a finding.

Exit status: 0 when nothing was found (or a replayed finding no longer crashes), 1 when a run found
crashes (or a finding still reproduces, or a live node stopped answering or committing), 2 when the
chosen engine is not installed. Heavy modules load inside the commands, so `tensornet --help` stays fast.
"""

from __future__ import annotations

import enum
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli.app import JsonOption, emit, print_error, stdout_console
from node.errors import CliError
from protocol import codec
from protocol.errors import ProtocolError

fuzz_app = typer.Typer(help="Fuzz the protocol's messages.", no_args_is_help=True)

EXIT_FOUND = 1
EXIT_ENGINE_MISSING = 2


class Engine(enum.StrEnum):
    random = "random"
    hypothesis = "hypothesis"
    atheris = "atheris"


def _quiet_network_logs() -> None:
    """The node bans the fuzzer on purpose; py-libp2p then logs every refused stream at length, and httpx logs
    every health poll. The report says all of it in one place, so those loggers only speak on errors."""
    import libp2p.host.basic_host  # noqa: F401 - load py-libp2p's loggers now, so their levels can be set

    prefixes = ("libp2p", "httpx", "httpcore", "p2pnet", "multiaddr", "async_service")
    for name in [*prefixes, *logging.root.manager.loggerDict]:
        if name.startswith(prefixes):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def register(app: typer.Typer) -> None:
    app.add_typer(fuzz_app, name="fuzz")


@fuzz_app.command("list")
def list_targets(as_json: JsonOption = False) -> None:
    """Every fuzz target, with what it exercises."""
    from node.fuzz.targets import registry  # start-up time: trio, libp2p

    rows = [{"name": t.name, "description": t.description} for t in registry().values()]
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        emit(rows, False, title="fuzz targets")


@fuzz_app.command("run")
def run(
    target: Annotated[str, typer.Argument(help="A target name (see `tensornet fuzz list`).")],
    seconds: Annotated[float | None, typer.Option("--seconds", help="Fuzz this long (default 10 s).")] = None,
    runs: Annotated[int | None, typer.Option("--runs", help="Stop after this many inputs.")] = None,
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="Seeds from DIR/<target>/, new behaviours saved there, findings in "
                     "DIR/findings (default ./fuzz-findings)."),
    ] = None,
    engine: Annotated[Engine, typer.Option("--engine", help="random (always there), hypothesis, atheris.")] = (
        Engine.random
    ),
    seed: Annotated[int, typer.Option("--seed", help="RNG seed: the same seed and runs give the same inputs.")] = 0,
    sign_with_test_key: Annotated[
        bool, typer.Option("--sign-with-test-key", help="Re-sign every mutant (deterministic test keys), so it gets "
                           "past the signature check into deeper validation.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Per-input time budget in seconds (a hang).")] = 1.0,
    mem_cap: Annotated[int, typer.Option("--mem-cap", help="Peak RSS growth per input, MiB (a memory bug).")] = 256,
    as_json: JsonOption = False,
) -> None:
    """Fuzz one target with structure-aware mutants; crashes, hangs and memory blow-ups become findings."""
    from node.fuzz import corpus as corpus_mod  # start-up time: trio, libp2p
    from node.fuzz import engines, targets

    t = targets.get(target)
    if runs is not None and runs < 0 or seconds is not None and seconds < 0:
        raise typer.BadParameter("--runs and --seconds must be >= 0")
    if engine is Engine.atheris and not engines.atheris_available():
        print_error(engines.ATHERIS_HELP)
        raise typer.Exit(EXIT_ENGINE_MISSING)
    budget = engines.Budget(runs=runs, seconds=seconds)
    findings = corpus_mod.findings_dir(corpus)
    seeds = corpus_mod.load_seeds(corpus, t.name) + t.seeds()

    def on_new(data: bytes, out: Any) -> None:
        if corpus is not None and out.finding is None:
            corpus_mod.write_seed(corpus, t.name, data)

    def done(stats: Any) -> None:
        _report(stats, findings, as_json)

    with engines.Harness(t, budget_s=timeout, mem_cap_mb=mem_cap, findings_dir=findings, engine=engine.value,
                         seed=seed, resign=sign_with_test_key) as harness:
        try:
            if engine is Engine.random:
                stats = engines.run_random(harness, seeds, budget, seed=seed, resign=sign_with_test_key,
                                           on_new=on_new)
            elif engine is Engine.hypothesis:
                stats = engines.run_hypothesis(harness, seeds, budget, seed=seed, resign=sign_with_test_key,
                                               on_new=on_new)
            else:
                stats = engines.run_atheris(harness, seeds, budget, seed=seed, resign=sign_with_test_key,
                                            on_new=on_new, on_done=done,
                                            corpus_dir=(corpus / t.name) if corpus is not None else None)
        except engines.EngineUnavailable as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_ENGINE_MISSING) from exc
    done(stats)
    if stats.crashes:
        raise typer.Exit(EXIT_FOUND)


def _report(stats: Any, findings: Path, as_json: bool) -> None:
    summary = stats.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console = stdout_console()
    console.print(
        f"{summary['target']}: {summary['runs']} inputs in {summary['seconds']} s "
        f"({summary['inputs_per_s']}/s, engine {summary['engine']}), {summary['accepted']} accepted, "
        f"{summary['rejected']} rejected, {summary['distinct_outcomes']} distinct outcomes, "
        f"slowest {summary['slowest_ms']} ms"
    )
    if not summary["findings"]:
        console.print("no crashes, hangs or memory blow-ups")
        return
    console.print(f"[bold red]{summary['crashes']} finding(s)[/], saved under {findings}:")
    for f in summary["findings"]:
        console.print(f"  {f['count']}x {f['signature']}: {f['message'][:160]}")
        for path in f["files"]:
            console.print(f"     tensornet fuzz repro {path}")


@fuzz_app.command("repro")
def repro(
    file: Annotated[Path, typer.Argument(help="A finding (<id>.json), or a raw input file with --target.")],
    target: Annotated[str | None, typer.Option("--target", help="Target for a raw input file.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Per-input time budget in seconds.")] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Replay one input deterministically: show it decoded, then its outcome (exit 1 if it still crashes)."""
    from node.fuzz import engines, targets  # start-up time: trio, libp2p

    if not file.is_file():
        raise CliError(f"{file} is not a file")
    meta: dict[str, Any] = {}
    if file.suffix == ".json":
        try:
            meta = json.loads(file.read_text())
            data = bytes.fromhex(meta["data"])
        except (ValueError, KeyError) as exc:
            raise CliError(f"{file} is not a finding written by `tensornet fuzz run`: {exc}") from exc
    else:
        data = file.read_bytes()
        side = file.with_suffix(".json")
        if side.is_file():
            meta = json.loads(side.read_text())
    name = target or meta.get("target")
    if not name:
        raise CliError(f"{file} is a raw input: say which target with --target")
    t = targets.get(name)
    with engines.Harness(t, budget_s=timeout, engine="repro") as harness:
        out = harness.run_one(data)
    report = {
        "target": t.name,
        "file": str(file),
        "size": len(data),
        "decoded": diagnostic(data),
        "outcome": out.status,
        "label": out.label,
        "reproduced": out.finding is not None,
        "signature": out.finding.signature if out.finding else None,
        "traceback": out.finding.traceback if out.finding else None,
        "recorded_signature": meta.get("signature"),
    }
    if as_json:
        typer.echo(json.dumps(report))
    else:
        console = stdout_console()
        console.print(f"target {t.name}, {len(data)} bytes: {data[:64].hex()}{'…' if len(data) > 64 else ''}")
        console.print(f"decoded: {report['decoded']}", markup=False)
        console.print(f"outcome: {out.status} ({out.label})", markup=False)
        if out.finding is not None:
            console.print(out.finding.traceback, markup=False)
    if out.finding is not None:
        raise typer.Exit(EXIT_FOUND)


def diagnostic(data: bytes, limit: int = 2000) -> str:
    """The input as readable text: strict decode if it is canonical, else cbor2's lenient reading."""
    try:
        return _short(repr(codec.decode(data)), limit)
    except ProtocolError as exc:
        strict = f"{type(exc).__name__}: {exc}"
    try:
        import cbor2

        return _short(f"not canonical ({strict}); leniently: {cbor2.loads(data)!r}", limit)
    except Exception as exc:  # noqa: BLE001 - any reason cbor2 cannot read it is diagnostic only
        return f"not CBOR ({strict}; cbor2: {type(exc).__name__})"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


@fuzz_app.command("capture")
def capture(
    out: Annotated[Path, typer.Option("--out", help="Corpus directory to write (<out>/<target>/<hash>.bin).")],
    node: Annotated[str | None, typer.Option("--node", help="A running node's API URL (fetches over libp2p).")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="A node home: read its chain.db.")] = None,
    peer: Annotated[str | None, typer.Option("--peer", help="The node's multiaddr, if /status does not say.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a seed corpus from the real messages of a local network."""
    from node.fuzz import corpus as corpus_mod  # start-up time: trio, libp2p

    if (node is None) == (home is None):
        raise CliError("give exactly one of --node URL or --home DIR")
    if home is not None:
        counts = corpus_mod.capture_home(home, out)
    else:
        import trio  # start-up time

        _quiet_network_logs()
        counts = trio.run(corpus_mod.capture_node, node, out, peer)
    if not counts:
        raise corpus_mod.CaptureError("nothing captured: the node has no commits yet")
    emit({"out": str(out), "seeds": counts, "total": sum(counts.values())}, as_json, title="captured")


@fuzz_app.command("live")
def live(
    target: Annotated[str, typer.Argument(help="all, block, dag, tx, weights, state, status, fetch_blocks, "
                                            "fetch_commits or frame.")],
    peer: Annotated[str | None, typer.Option("--peer", help="The node's multiaddr (/ip4/../tcp/../p2p/..).")] = None,
    api: Annotated[str | None, typer.Option("--api", help="The node's API URL (handshake data, health checks).")] = (
        None
    ),
    seconds: Annotated[float, typer.Option("--seconds", help="How long to fuzz.")] = 20.0,
    rate: Annotated[float, typer.Option("--rate", help="Messages per second.")] = 50.0,
    seed: Annotated[int, typer.Option("--seed", help="RNG seed for the mutants.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Send mutants to a running node over libp2p; check it keeps answering and committing."""
    import trio  # start-up time: trio, libp2p

    from node.fuzz.live import node_info, run_live

    _quiet_network_logs()
    info = node_info(api, peer)
    report = trio.run(lambda: run_live(target, info, seconds=seconds, rate=rate, seed=seed))
    if as_json:
        typer.echo(json.dumps(report))
    else:
        n = report["node"]
        console = stdout_console()
        console.print(f"sent {report['sent_total']} mutants in {report['seconds']} s: {report['sent']}", markup=False)
        if report["send_errors"]:
            console.print(f"send errors: {report['send_errors']}", markup=False)
        console.print(
            f"node: {n['polls']} polls, {n['failed_polls']} unanswered, height {n['height_start']} -> "
            f"{n['height_end']}, longest stall {n['max_stall_s']} s", markup=False
        )
        console.print(f"node rejected (stats): {report['rejected']}", markup=False)
        console.print(f"node rejected (metrics): {report['metrics_rejects']}", markup=False)
        console.print("ok: the node stayed responsive and kept committing" if report["ok"]
                      else "[bold red]NOT ok[/]: the node stopped answering or committing")
    if not report["ok"]:
        raise typer.Exit(EXIT_FOUND)
