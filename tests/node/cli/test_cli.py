"""The `tensornet` CLI: groups and placeholders, wallet commands, error lines, logs, demo, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from node.cli import app as cli
from node.cli.app import GROUPS, build_app, emit, load_command_module
from node.errors import CliError, WrongPasswordError

PW = "hunter2 but longer"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TENSORNET_PASSWORD", raising=False)
    monkeypatch.setenv("TENSORNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TENSORNET_KDF", "fast")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return build_app()


def secret_file(path: Path, text: str) -> Path:
    """A password file as a careful user writes it: 0600 (group/others-readable ones get a warning line)."""
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    return secret_file(tmp_path / "pw", PW + "\n")


def run(app: typer.Typer, *args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def create(app: typer.Typer, pwfile: Path, name: str = "alice", *extra: str):
    result = run(app, "wallet", "create", "--name", name, "--password-file", str(pwfile), "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- the app's shape ---------------------------------------------------------------------------


def test_help_lists_every_group(app: typer.Typer) -> None:
    result = run(app, "--help")
    assert result.exit_code == 0
    for group in ("wallet", "node", "bootstrap", "tx", "subnet", "miner", "validator", "testnet", "fuzz", "demo"):
        assert group in GROUPS
        assert f" {group} " in result.stdout, group
    for option in ("--log-format", "--log-level", "--debug"):
        assert option in result.stdout


def test_placeholder_says_not_built_yet() -> None:
    app = build_app({"nosuchgroup": ("Does a thing.", 99)})
    result = run(app, "nosuchgroup", "run", "--flag", "x")
    assert result.exit_code == cli.EXIT_NOT_BUILT
    assert "tensornet nosuchgroup: not built yet: see issue 99" in result.stderr
    helped = run(app, "nosuchgroup", "--help")
    assert helped.exit_code == 0 and "not built yet: see issue 99" in helped.stdout
    assert "not built yet: see issue 99" in run(app, "--help").stdout


def test_only_the_missing_module_itself_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_command_module("nosuchgroup") is None
    assert load_command_module("wallet") is not None

    def broken(name: str):
        raise ModuleNotFoundError("No module named 'somedep'", name="somedep")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="somedep"):
        load_command_module("wallet")


def test_module_attribute_app_and_version() -> None:
    assert isinstance(cli.app, typer.Typer)
    result = run(cli.app, "--version")
    assert result.exit_code == 0 and result.stdout.startswith("tensornet ")


# --- wallet commands ---------------------------------------------------------------------------


def test_wallet_create_list_show(app: typer.Typer, pwfile: Path, tmp_path: Path) -> None:
    made = create(app, pwfile)
    assert made["name"] == "alice" and made["coldkey"].startswith("tn") and set(made["hotkeys"]) == {"default"}
    coldkey = tmp_path / "home" / "wallets" / "alice" / "coldkey"
    assert os.stat(coldkey).st_mode & 0o777 == 0o600
    assert os.stat(coldkey.parent / "hotkeys" / "default").st_mode & 0o777 == 0o600

    listed = run(app, "wallet", "list", "--json")
    assert listed.exit_code == 0
    doc = json.loads(listed.stdout)
    assert doc["home"] == str(tmp_path / "home")
    rows = [(w["name"], w["coldkey"], w["hotkeys"]) for w in doc["wallets"]]
    assert rows == [("alice", made["coldkey"], ["default"])]

    shown = run(app, "wallet", "show", "alice", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout) == made

    text = run(app, "wallet", "show", "alice")
    assert text.exit_code == 0 and made["coldkey"] in text.stdout
    assert made["coldkey"] in run(app, "wallet", "list").stdout


def test_new_hotkey_and_unlock(app: typer.Typer, pwfile: Path) -> None:
    create(app, pwfile)
    added = run(app, "wallet", "new-hotkey", "alice", "--hotkey", "gpu1", "--json")
    assert added.exit_code == 0
    assert json.loads(added.stdout)["hotkey"] == "gpu1"
    shown = json.loads(run(app, "wallet", "show", "alice", "--json").stdout)
    assert shown["hotkeys"]["gpu1"] == json.loads(added.stdout)["address"]
    again = run(app, "wallet", "new-hotkey", "alice", "--hotkey", "gpu1")
    assert again.exit_code == 1 and "already exists" in again.stderr

    unlocked = run(app, "wallet", "unlock", "alice", "--password-file", str(pwfile), "--json")
    assert unlocked.exit_code == 0
    assert json.loads(unlocked.stdout) == {"wallet": "alice", "coldkey": shown["coldkey"], "unlocked": True}


def test_password_from_env_and_prompt(app: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    prompted = run(app, "wallet", "create", "--name", "p", "--json", input=f"{PW}\n{PW}\n")
    assert prompted.exit_code == 0, prompted.output
    monkeypatch.setenv("TENSORNET_PASSWORD", PW)
    assert run(app, "wallet", "unlock", "p").exit_code == 0
    monkeypatch.setenv("TENSORNET_PASSWORD", "nope")
    assert run(app, "wallet", "unlock", "p").exit_code == 1


def test_closed_stdin_gives_a_clear_error(app: typer.Typer) -> None:
    result = run(app, "wallet", "create", "--name", "q", input="")
    assert result.exit_code == 1
    assert "use --password-file or set $TENSORNET_PASSWORD" in result.stderr


def test_wrong_password_is_one_line_and_exit_1(app: typer.Typer, pwfile: Path, tmp_path: Path) -> None:
    create(app, pwfile)
    bad = secret_file(tmp_path / "bad", "wrong\n")
    result = run(app, "wallet", "unlock", "alice", "--password-file", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: wrong password for coldkey")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stdout == ""


def test_a_shared_password_file_adds_the_chmod_warning_before_the_one_error_line(
    app: typer.Typer, pwfile: Path, tmp_path: Path
) -> None:
    """The warning (issue 14) is its own log line; the error stays one line, last."""
    create(app, pwfile)
    bad = secret_file(tmp_path / "bad", "wrong\n")
    bad.chmod(0o644)
    result = run(app, "wallet", "unlock", "alice", "--password-file", str(bad))
    assert result.exit_code == 1
    warning, error = result.stderr.splitlines()
    assert "warning" in warning and f"run: chmod 600 {bad}" in warning
    assert error.startswith("error: wrong password for coldkey")


def test_debug_shows_the_real_exception(app: typer.Typer, pwfile: Path, tmp_path: Path) -> None:
    create(app, pwfile)
    bad = secret_file(tmp_path / "bad", "wrong\n")
    result = run(app, "--debug", "wallet", "unlock", "alice", "--password-file", str(bad))
    assert result.exit_code == 1
    assert isinstance(result.exception, WrongPasswordError)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_text("{oops"), "is not valid JSON"),
        (lambda p: p.chmod(0o644), "run: chmod 600"),
        (lambda p: p.unlink(), "does not exist"),
    ],
)
def test_damaged_coldkey_is_one_clear_line(app: typer.Typer, pwfile: Path, tmp_path: Path, damage, message) -> None:
    create(app, pwfile)
    damage(tmp_path / "home" / "wallets" / "alice" / "coldkey")
    result = run(app, "wallet", "show", "alice")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    listed = json.loads(run(app, "wallet", "list", "--json").stdout)["wallets"]
    assert listed[0]["name"] == "alice" and message in listed[0]["error"]


def test_bad_input_is_refused(app: typer.Typer, pwfile: Path) -> None:
    create(app, pwfile)
    again = run(app, "wallet", "create", "--name", "alice", "--password-file", str(pwfile))
    assert again.exit_code == 1 and "already exists" in again.stderr
    traversal = run(app, "wallet", "create", "--name", "../x", "--password-file", str(pwfile))
    assert traversal.exit_code == 1 and "not allowed" in traversal.stderr
    missing = run(app, "wallet", "show", "nobody")
    assert missing.exit_code == 1 and "no wallet 'nobody'" in missing.stderr
    kdf = run(app, "wallet", "create", "--name", "k", "--kdf", "slow", "--password-file", str(pwfile))
    assert kdf.exit_code == 1 and "unknown KDF profile" in kdf.stderr
    usage = run(app, "wallet", "create")
    assert usage.exit_code == 2 and "--name" in usage.output


def test_unexpected_exception_is_exit_70_without_traceback() -> None:
    app = build_app({})

    @app.command("boom")
    def boom() -> None:
        raise RuntimeError("kaput")

    result = run(app, "boom")
    assert result.exit_code == cli.EXIT_BUG
    assert "internal error: RuntimeError: kaput (rerun with --debug" in result.stderr
    debug = run(app, "--debug", "boom")
    assert isinstance(debug.exception, RuntimeError)


def test_typed_errors_inside_exception_groups_are_still_one_line() -> None:
    app = build_app({})

    @app.command("group")
    def group(bug: bool = False) -> None:
        inner: list[Exception] = [WrongPasswordError("first"), CliError("second"), WrongPasswordError("first")]
        raise ExceptionGroup("nursery", [*inner, *([KeyError("k")] if bug else [])])

    result = run(app, "group")
    assert result.exit_code == 1
    assert result.stderr == "error: first; second\n"
    buggy = run(app, "group", "--bug")
    assert buggy.exit_code == cli.EXIT_BUG and "internal error: KeyError" in buggy.stderr


def test_json_logs_on_stderr_keep_stdout_clean(app: typer.Typer, pwfile: Path) -> None:
    result = run(app, "--log-format", "json", "wallet", "create", "-n", "j", "--password-file", str(pwfile), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["name"] == "j"
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(r["event"].startswith("weak key derivation") and r["level"] == "warning" for r in records)
    quiet = run(app, "--log-level", "error", "wallet", "create", "-n", "k", "--password-file", str(pwfile))
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_emit_plain_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"a": b"\x01\x02", "p": Path("/x"), "t": (1, 2)}, True)
    assert json.loads(capsys.readouterr().out) == {"a": "0102", "p": "/x", "t": [1, 2]}
    emit([{"name": "n1", "v": 1}, {"name": "n2", "w": [1]}], False, title="rows")
    out = capsys.readouterr().out
    assert "rows" in out and "n2" in out and "[1]" in out
    with pytest.raises(TypeError, match="cannot encode object"):
        emit({"x": object()}, True)


# --- demo and real processes -------------------------------------------------------------------


def test_demo_runs_and_checks_itself(app: typer.Typer) -> None:
    result = run(app, "demo", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["headline"].startswith("tensornet demo: the local network is not built yet")
    verdicts = {c["case"]: c["verdict"] for c in report["cases"]}
    assert verdicts["transfer"] == "accepted"
    assert verdicts["tampered amount"].startswith("rejected: BadSignatureError")
    assert verdicts["wrong chain"].startswith("rejected: WrongChainError")
    text = run(app, "demo")
    assert text.exit_code == 0 and "the local network is not built yet" in text.stdout
    assert "12/12 verdicts as expected" in text.stdout


def _proc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_real_processes(tmp_path: Path, pwfile: Path) -> None:
    env = {**os.environ, "TENSORNET_HOME": str(tmp_path / "home"), "TENSORNET_KDF": "fast", "NO_COLOR": "1"}
    script = Path(sys.executable).parent / "tensornet"
    first = [str(script)] if script.exists() else [sys.executable, "-m", "node.cli.app"]
    made = _proc(*first, "wallet", "create", "--name", "sub", "--password-file", str(pwfile), "--json", env=env)
    assert made.returncode == 0, made.stderr
    coldkey = json.loads(made.stdout)["coldkey"]

    listed = _proc(sys.executable, "-m", "node.cli.app", "wallet", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["wallets"][0]["coldkey"] == coldkey

    wrong = _proc(sys.executable, "-m", "node.cli.app", "wallet", "unlock", "sub",
                  env={**env, "TENSORNET_PASSWORD": "x"})
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: wrong password") and wrong.stderr.count("\n") == 1
    assert "Traceback" not in wrong.stderr


def test_log_configure_reaches_existing_loggers_and_stdlib(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from node import log

    early = log.get_logger("early", peer="p1")  # made before configure(), as module-level loggers are
    try:
        log.configure("json", "info")
        early.info("hello", n=1)
        early.debug("hidden")
        logging.getLogger("somelib").warning("from %s", "stdlib")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(r["event"], r["level"], r["logger"]) for r in lines] == [
            ("hello", "info", "early"),
            ("from stdlib", "warning", "somelib"),
        ]
        assert lines[0]["peer"] == "p1" and lines[0]["n"] == 1 and "timestamp" in lines[0]
        log.configure("text", "warning")
        early.info("quiet")
        early.warning("loud")
        err = capsys.readouterr().err
        assert "quiet" not in err and "loud" in err and "peer=p1" in err
        with pytest.raises(ValueError, match="log level"):
            log.configure("text", "verbose")
        with pytest.raises(ValueError, match="log format"):
            log.configure("xml", "info")  # type: ignore[arg-type]
    finally:
        log.configure("text", "info")


def test_unlock_coldkey_helper_for_other_commands(app: typer.Typer, pwfile: Path, tmp_path: Path) -> None:
    made = create(app, pwfile)
    keypair = cli.unlock_coldkey(tmp_path / "home", "alice", pwfile)
    assert keypair.address == made["coldkey"]
    bad = secret_file(tmp_path / "bad", "nope\n")
    with pytest.raises(WrongPasswordError):
        cli.unlock_coldkey(None, "alice", bad)  # None: the home comes from $TENSORNET_HOME
