"""Every CLI error is one line on stderr (README's promise), walked over the whole command tree.

The walk builds the real app and visits every leaf command: a bad integer, a missing required option and
an unknown option are usage errors (exit 2) that never reach the command's body. An unreachable node API
and a missing input file do reach it, so those run with sample values for the required options, against a
closed loopback port. `--debug` still shows typer's full box.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from node import log
from node.cli.app import build_app
from protocol import crypto
from protocol.economics.emission import UNIT, format_tokens

PW = "correct horse battery"
ADDRESS = crypto.address(bytes(range(32)))
# sample values for required parameters, by parameter name, so a command's body runs up to its first I/O
SAMPLES = {
    "to": ADDRESS, "hotkey_address": ADDRESS, "address": ADDRESS, "amount": "1", "max_burn": "1", "name": "x",
    "netuid": "1", "subnet": "1", "peer_id": "12D3KooWx", "multiaddr": "/ip4/127.0.0.1/tcp/1", "uids": "0",
    "values": "1", "salt": "00" * 16, "param": "max_subnets", "value": "5", "proposal": "1", "choice": "yes",
    "escrow": "1", "target": "codec", "file": "/nonexistent/input", "names": "node0", "uid": "0",
}  # fmt: skip


def leaf_commands(app: typer.Typer) -> Iterator[tuple[list[str], Any]]:
    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    return walk(typer.main.get_command(app), [])


def annotation(param: Any) -> Any:
    return param.type_descriptor.annotation


def flag(param: Any) -> str | None:
    opts = [o for o in param.opts if o.startswith("--")]
    return max(opts, key=len) if opts else None


def required_args(cmd: Any, tmp_path: Path, skip: str | None = None) -> list[str]:
    """Sample values for every required parameter (options as `--opt value`, arguments in order)."""
    out: list[str] = []
    for p in cmd.params:
        if not p.required or p.name == skip:
            continue
        value = SAMPLES.get(p.name, str(tmp_path / f"sample-{p.name}"))
        out += [flag(p), value] if flag(p) else [value]
    return out


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return build_app()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TENSORNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TENSORNET_KDF", "fast")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("TENSORNET_PASSWORD", raising=False)
    monkeypatch.delenv("TENSORNET_NODE", raising=False)
    (tmp_path / "pw").write_text(PW + "\n")
    (tmp_path / "pw").chmod(0o600)  # else a (one-line) warning about its mode comes first
    return tmp_path


def run(app: typer.Typer, args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


def assert_one_line(result: Any, args: list[str], code: int, needle: str = "") -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (args, result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert needle in lines[0], (args, lines[0])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused


# --- usage errors, every command --------------------------------------------------------------


def test_every_bad_number_is_one_line(app: typer.Typer, env: Path) -> None:
    seen = 0
    for path, cmd in leaf_commands(app):
        for p in cmd.params:
            kind = annotation(p)
            if kind not in (int, float, int | None, float | None):
                continue
            # given first on the command line, the bad value is checked before anything else
            args = [*path, flag(p), "4x8"] if flag(p) else [*path, "4x8"]
            needle = "'4x8' is not an integer" if int in (kind, *getattr(kind, "__args__", ())) else "is not a number"
            assert_one_line(run(app, args), args, 2, needle)
            seen += 1
    assert seen > 40  # the walk really found the options


def test_the_issue_example_reads_as_promised(app: typer.Typer, env: Path) -> None:
    result = run(app, ["gov", "propose", "--param", "max_subnets", "--value", "4x8"])
    assert result.exit_code == 2 and result.stderr == "error: --value: '4x8' is not an integer\n"


def test_every_missing_required_option_is_one_line(app: typer.Typer, env: Path) -> None:
    seen = 0
    for path, cmd in leaf_commands(app):
        required = [p for p in cmd.params if p.required]
        if not required:
            continue
        for p in required:
            args = [*path, *required_args(cmd, env, skip=p.name)]
            name = flag(p) or p.name.upper()
            assert_one_line(run(app, args), args, 2, f"{name} is required")
            seen += 1
    assert seen > 40


def test_unknown_options_and_commands_are_one_line(app: typer.Typer, env: Path) -> None:
    for path, _cmd in leaf_commands(app):
        args = [*path, "--no-such-option"]
        assert_one_line(run(app, args), args, 2, "no such option: --no-such-option")
    assert_one_line(run(app, ["nosuch"]), ["nosuch"], 2, "no such command 'nosuch' (see: tensornet --help)")
    assert_one_line(run(app, ["--log-level", "loud", "demo"]), [], 2, "--log-level: 'loud' is not one of")


def test_debug_shows_the_full_usage_box(app: typer.Typer, env: Path) -> None:
    result = run(app, ["--debug", "gov", "propose", "--param", "max_subnets", "--value", "4x8"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) > 1 and "Usage:" in result.stderr


# --- errors from the command bodies ------------------------------------------------------------


def test_every_node_command_without_a_node_is_one_line(app: typer.Typer, env: Path) -> None:
    created = run(app, ["wallet", "create", "--name", "default", "--password-file", str(env / "pw")])
    assert created.exit_code == 0, created.output
    node = f"http://127.0.0.1:{closed_port()}"
    seen = 0
    for path, cmd in leaf_commands(app):
        flags = {flag(p) for p in cmd.params}
        if "--node" not in flags:
            continue
        args = [*path, *required_args(cmd, env), "--node", node]
        if "--password-file" in flags:
            args += ["--password-file", str(env / "pw")]
        if path == ["client", "query"]:
            args += ["--rows", "1", "--cols", "1"]
        if path == ["miner", "run"]:
            args += ["--gpus", "none"]
        assert_one_line(run(app, args), args, 1, "cannot reach the node")
        seen += 1
    assert seen >= 20


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["node", "init", "--genesis", "/nonexistent/genesis.json"], "cannot read genesis /nonexistent/genesis.json"),
        (["tx", "transfer", "--to", ADDRESS, "--amount", "1", "--password-file", "/nonexistent/pw"],
         "cannot read password file /nonexistent/pw"),
        (["client", "query", "--subnet", "1", "--input-cbor", "/nonexistent/q"], "cannot read --input-cbor"),
        (["fuzz", "repro", "/nonexistent/input"], "/nonexistent/input"),
        (["wallet", "show", "nosuchwallet"], "nosuchwallet"),
    ],
)
def test_missing_files_are_one_line(app: typer.Typer, env: Path, args: list[str], needle: str) -> None:
    if "--password-file" in args:
        assert run(app, ["wallet", "create", "--name", "default", "--password-file", str(env / "pw")]).exit_code == 0
    assert_one_line(run(app, args), args, 1, needle)


# --- logs and amounts ---------------------------------------------------------------------------


def test_http_libraries_are_quiet_unless_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("hypercorn.error").setLevel(logging.INFO)  # as hypercorn leaves it after serving
    try:
        log.configure("text", "info")
        for name in ("httpx", "hypercorn.error"):
            logging.getLogger(name).info("HTTP Request: GET http://x/status")
        logging.getLogger("httpx").warning("a real problem")
        err = capsys.readouterr().err
        assert "HTTP Request" not in err and "a real problem" in err
        log.configure("text", "debug")
        logging.getLogger("httpx").info("HTTP Request: GET http://x/status")
        assert "HTTP Request" in capsys.readouterr().err
    finally:
        log.configure("text", "info")


def test_amounts_read_in_tokens_with_the_units() -> None:
    assert format_tokens(UNIT // 10) == "0.1 token (100000000 units)"
    assert format_tokens(0) == "0 token"
    assert format_tokens(5 * UNIT) == f"5 token ({5 * UNIT} units)"
    assert format_tokens(1) == "0.000000001 token (1 units)"
    assert format_tokens(-UNIT - 1) == f"-1.000000001 token ({-UNIT - 1} units)"


def test_a_taken_api_port_is_one_clear_line(tmp_path: Path) -> None:
    """A node whose API port is held by another process says so in one line, not as an internal error."""
    import subprocess
    import sys

    from node.testnet.gen import generate

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            p2p = probe.getsockname()[1]
        plans, _ = generate(tmp_path / "net", hosts=["127.0.0.1"], p2p_base=p2p, api_base=port)
        res = subprocess.run([sys.executable, "-m", "node.cli.app", "node", "run", "--home", str(plans[0].home)],
                             capture_output=True, text=True, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert "another process holds the port" in lines[0] and "internal error" not in lines[0]
