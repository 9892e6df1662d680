"""The `tensornet` command line: one typer app, one module per command group.

Each group lives in `node/cli/cmd_<name>.py`, or in a module registered through node/plugins.py (the subnet
groups: miner, validator, client), and exports `register(app: typer.Typer) -> None`. A group whose module is not
installed gets a placeholder that says which issue will build it, so
`tensornet --help` always shows the whole product. Typed errors (`NodeError`, `ProtocolError`,
`P2PError`) print one red line on stderr and exit 1; anything else is a bug: one line and exit 70,
with the traceback only under `--debug`. Usage errors (a bad option value, a missing option, an unknown
command) are one line too, exit 2: `error: --value: '4x8' is not an integer`; `--debug` shows typer's box.
A stdout whose reader went away (`tensornet ... | head`) is no error: exit 141 (128 + SIGPIPE), silently.

Command modules import their helpers from here (`emit`, the shared options, `unlock_coldkey`, `load_hotkey`);
importing this module does not import the command modules, so there is no import cycle.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import functools
import importlib
import json
import os
import select
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from node import log, plugins
from node.client.wallet import Wallet, read_password
from node.errors import CliError, NodeError, PasswordError
from protocol.crypto import Keypair
from protocol.errors import ProtocolError

__all__ = [
    "CliError",
    "GROUPS",
    "HomeOption",
    "HotkeyOption",
    "JsonOption",
    "NodeOption",
    "PasswordFileOption",
    "WalletOption",
    "build_app",
    "cli_password",
    "coldkey_when_needed",
    "emit",
    "get_app",
    "load_hotkey",
    "main",
    "print_error",
    "prompt_password",
    "stderr_console",
    "stdout_console",
    "unlock_coldkey",
]

EXIT_ERROR = 1  # a typed, expected error: bad input, wrong password, refused operation
EXIT_USAGE = 2  # the command line itself is wrong (click's convention)
EXIT_NOT_BUILT = 2  # a placeholder group
EXIT_BUG = 70  # an unexpected exception (EX_SOFTWARE)
# stdout's reader went away (`tensornet ... | head`): 128 + SIGPIPE, the status a shell reports for `yes | head`'s
# `yes`. Not 0: the output was cut short, and `set -o pipefail` scripts should see the same as for any Unix tool.
EXIT_CLOSED_STDOUT = 141

# name -> (one-line help, issue that builds it). Order is the order `tensornet --help` shows.
GROUPS: dict[str, tuple[str, int]] = {
    "wallet": ("Create and inspect wallets: an encrypted coldkey and its hotkeys.", 2),
    "node": ("Run a full or validator node.", 5),
    "bootstrap": ("Run a bootstrap node that new peers dial first.", 3),
    "tx": ("Build, sign and submit transactions.", 5),
    "subnet": ("Create, register on and inspect subnets.", 5),
    "chain": ("Audit the chain: supply and conservation.", 17),
    "gov": ("Propose and vote on network parameter changes.", 9),
    "miner": ("Serve a subnet's task from local GPUs.", 6),
    "validator": ("Score a subnet's miners and set weights.", 6),
    "client": ("Pay for queries to a subnet's miners.", 9),
    "testnet": ("Start or join a multi-machine testnet.", 7),
    "fuzz": ("Fuzz the protocol's messages.", 8),
    "demo": ("Show what exists so far, on this machine, in one command.", 2),
}


# --- shared options (reuse these so every command spells them the same way) ---------------------

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Home directory; default $TENSORNET_HOME, else ~/.tensornet.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="File whose first line is the coldkey password (else $TENSORNET_PASSWORD, else a prompt).",
        show_default=False,
    ),
]
WalletOption = Annotated[str, typer.Option("--wallet", "-w", help="Wallet name.")]
HotkeyOption = Annotated[str, typer.Option("--hotkey", "-k", help="Hotkey name within the wallet.")]
NodeOption = Annotated[str | None, typer.Option("--node", help="Node API URL (default $TENSORNET_NODE).")]


# --- output ------------------------------------------------------------------------------------


class _StdoutConsole(Console):
    """Rich exits 1 on a closed stdout by itself; this makes it exit as the rest of the CLI does."""

    def on_broken_pipe(self) -> None:
        _exit_on_closed_stdout()


def stdout_console() -> Console:
    """A console on the current stdout; wide when not a terminal so tables do not wrap in logs."""
    return _StdoutConsole(soft_wrap=False, highlight=False, width=None if sys.stdout.isatty() else 200)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll flags POLLERR on it), so that a BrokenPipeError
    came from our own output and not from a socket to a node or peer (that one is a real error)."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):  # stdout is no file (captured in tests), or no poll (Windows)
        return False
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _exit_on_closed_stdout() -> NoReturn:
    """Exit quietly: stdout goes to /dev/null first, so the interpreter's flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise typer.Exit(EXIT_CLOSED_STDOUT)


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _cell(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=_json_default)
    if isinstance(value, bytes):
        return value.hex()
    return "" if value is None else str(value)


def _render(obj: Any, title: str | None) -> None:
    console = stdout_console()
    if isinstance(obj, Mapping):
        table = Table(title=title, show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in obj.items():
            table.add_row(escape(str(key)), escape(_cell(value)))
        console.print(table)
    elif isinstance(obj, list) and all(isinstance(row, Mapping) for row in obj):
        columns: list[str] = []
        for row in obj:
            columns += [k for k in row if k not in columns]
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in obj:
            table.add_row(*(escape(_cell(row.get(c))) for c in columns))
        console.print(table)
    else:
        console.print(escape(_cell(obj)))


def emit(obj: Any, as_json: bool, *, title: str | None = None, render: Callable[[Any], None] | None = None) -> None:
    """Print a command's result: JSON on stdout with `--json`, else `render(obj)` or a plain table.

    JSON encodes bytes as hex, paths as strings and dataclasses as objects; one document per call.
    """
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=_json_default))
    elif render is not None:
        render(obj)
    else:
        _render(obj, title)


def print_error(message: str) -> None:
    """One red line on stderr: `error: <message>`."""
    stderr_console().print(f"[bold red]error:[/] {escape(' '.join(str(message).split()))}")


# --- passwords ---------------------------------------------------------------------------------


def prompt_password(confirm: bool, what: str) -> str:
    """Ask on the terminal (hidden; twice when creating a key); a closed stdin gives a clear error."""
    try:
        return typer.prompt(f"Password for the {what}", hide_input=True, confirmation_prompt=confirm)
    except (typer.Abort, EOFError) as exc:
        raise PasswordError(
            f"no password for the {what}: use --password-file or set $TENSORNET_PASSWORD"
        ) from exc


def cli_password(password_file: Path | None, *, confirm: bool = False, what: str = "coldkey") -> str:
    """`read_password` with the CLI's prompt: --password-file, then $TENSORNET_PASSWORD, then ask."""
    return read_password(password_file, confirm=confirm, what=what, prompt=prompt_password)


def unlock_coldkey(home: Path | None, wallet: str, password_file: Path | None) -> Keypair:
    """Load wallet `wallet` and decrypt its coldkey, as any command that moves funds needs."""
    loaded = Wallet.load(home, wallet)
    return loaded.coldkey(cli_password(password_file, what=f"coldkey of wallet {wallet!r}"))


def coldkey_when_needed(home: Path | None, wallet: str, password_file: Path | None) -> Callable[[], Keypair]:
    """`unlock_coldkey` on the first call only: a long-running command asks for the password only if it pays."""
    return functools.cache(lambda: unlock_coldkey(home, wallet, password_file))


def load_hotkey(home: Path | None, wallet: str, hotkey: str) -> Keypair:
    """Hotkey `hotkey` of wallet `wallet` (stored unencrypted: no password)."""
    return Wallet.load(home, wallet).hotkey(hotkey)


# --- the app -----------------------------------------------------------------------------------


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


LogLevel = enum.StrEnum("LogLevel", {name: name for name in log.LEVELS})


@dataclasses.dataclass
class CliState:
    """What the root options decided; commands find it in `ctx.obj`."""

    debug: bool = False
    log_format: str = "text"
    log_level: str = "info"


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (NodeError, ProtocolError)
    p2p = sys.modules.get("p2pnet.errors")  # only if loaded: then its errors can have been raised
    if p2p is not None and hasattr(p2p, "P2PError"):
        errors += (p2p.P2PError,)
    return errors


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


# typer's click (vendored in recent typer, the click package in older ones), found through a name typer exports.
_click_errors = importlib.import_module(typer.BadParameter.__module__)


def _param_name(param: Any) -> str:
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
    return max(opts, key=len) if opts else str(param.name).upper()  # an argument: its metavar


_NOT_A = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number",
          "decimal_parsing": "a number", "bool_parsing": "true or false"}


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _bad_value(exc: Exception) -> str:
    """What was wrong with a value. Recent typer converts with pydantic, whose messages omit the value."""
    cause = exc.__cause__
    errors = cause.errors() if callable(getattr(cause, "errors", None)) else []  # a pydantic ValidationError
    if not errors:
        return str(getattr(exc, "message", exc)).rstrip(".")
    first = errors[0]
    given = repr(first.get("input"))
    if first.get("type") in _NOT_A:
        return f"{given} is not {_NOT_A[first['type']]}"
    message = _lower_first(str(first.get("msg", "")).removeprefix("Value error, "))
    message = message.rstrip(".")
    return message if given in message else f"{given}: {message}"


def usage_line(exc: Exception) -> str:
    """A click usage error as one line: `--value: '4x8' is not an integer`, `--subnet is required`."""
    param = getattr(exc, "param", None)
    if isinstance(exc, _click_errors.MissingParameter) and param is not None:
        return f"{_param_name(param)} is required"
    if isinstance(exc, _click_errors.BadParameter) and param is not None:
        return f"{_param_name(param)}: {_bad_value(exc)}"
    message = _lower_first(exc.format_message() if hasattr(exc, "format_message") else str(exc))
    ctx = getattr(exc, "ctx", None)
    hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    return message.rstrip(".") + hint


def _usage_exit(exc: Exception, debug: bool) -> None:
    """Print a usage error as one line and exit 2; under --debug let typer show its full box instead."""
    if debug or isinstance(exc, _click_errors.NoArgsIsHelpError):  # that one is the help text, on purpose
        raise exc
    print_error(usage_line(exc))
    raise typer.Exit(EXIT_USAGE) from exc


class _RootGroup(TyperGroup):
    """Turns typed errors into one line and exit 1, usage errors into one line and exit 2, and unexpected
    ones into one line and exit 70."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """The root's own options (`--log-level bad`); --debug is not parsed yet, so look for it."""
        try:
            return super().parse_args(ctx, args)
        except _click_errors.UsageError as exc:
            _usage_exit(exc, "--debug" in args)
            raise  # unreachable: _usage_exit always raises

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _click_errors.UsageError as exc:  # a subcommand's options, or an unknown command
            _usage_exit(exc, bool(ctx.params.get("debug")))
            raise
        except (typer.Exit, typer.Abort, typer.TyperException):  # exits, and other errors typer formats itself
            raise
        except Exception as exc:
            leaves = _leaves(exc)  # trio nurseries wrap a task's error in an ExceptionGroup
            if any(isinstance(leaf, BrokenPipeError) for leaf in leaves) and _stdout_closed():
                _exit_on_closed_stdout()  # `tensornet ... | head`: not an error, even under --debug
            if isinstance(ctx.obj, CliState) and ctx.obj.debug:
                raise
            bugs = [leaf for leaf in leaves if not isinstance(leaf, _user_errors())]
            if not bugs:
                print_error("; ".join(dict.fromkeys(str(leaf) for leaf in leaves)))
                raise typer.Exit(EXIT_ERROR) from exc
            bug = bugs[0]
            if isinstance(bug, OSError) and bug.errno == errno.EADDRINUSE:  # a port taken: the user's to fix
                print_error(f"cannot listen: {bug.strerror}: another process holds the port; stop it, or pick "
                            "free ports (--listen/--api, or listen/api in the home's config.toml)")
                raise typer.Exit(EXIT_ERROR) from exc
            print_error(f"internal error: {type(bug).__name__}: {bug} (rerun with --debug for the traceback)")
            raise typer.Exit(EXIT_BUG) from exc


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("tensornet")
        except metadata.PackageNotFoundError:
            version = "unknown"
        typer.echo(f"tensornet {version}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="Log lines as text or JSON.")] = LogFormat.text,
    log_level: Annotated[LogLevel, typer.Option("--log-level", help="Lowest level logged.")] = LogLevel.info,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logs, and tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """tensornet: an open peer-to-peer network for machine intelligence."""
    level = "debug" if debug else str(log_level.value)
    log.configure(log_format.value, level)
    ctx.obj = CliState(debug=debug, log_format=log_format.value, log_level=level)


def _register_placeholder(app: typer.Typer, name: str, summary: str, issue: int) -> None:
    note = f"not built yet: see issue {issue}"

    def placeholder() -> None:
        stderr_console().print(f"tensornet {name}: {note}")
        raise typer.Exit(EXIT_NOT_BUILT)

    placeholder.__doc__ = f"{summary} ({note})"
    app.command(
        name,
        help=f"{summary} ({note})",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(placeholder)


def load_command_module(name: str) -> Any | None:
    """`node.cli.cmd_<name>`, else the module registered for `name` (node/plugins.py), else None.

    Errors inside an existing module propagate."""
    module_name = f"node.cli.cmd_{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
    return plugins.load(name)


def build_app(groups: Mapping[str, tuple[str, int]] = GROUPS) -> typer.Typer:
    """A fresh app with every group: the real module's `register(app)`, or a placeholder."""
    app = typer.Typer(
        cls=_RootGroup,
        name="tensornet",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,  # locals can hold passwords and seeds
    )
    app.callback()(_root)
    for name, (summary, issue) in groups.items():
        module = load_command_module(name)
        if module is None:
            _register_placeholder(app, name, summary, issue)
        else:
            module.register(app)
    return app


_app: typer.Typer | None = None


def get_app() -> typer.Typer:
    """The process-wide app, built on first use."""
    global _app
    if _app is None:
        _app = build_app()
    return _app


def __getattr__(name: str) -> Any:  # `node.cli.app.app`, built lazily to keep imports acyclic
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`tensornet`)."""
    get_app()(args=argv, prog_name="tensornet")


if __name__ == "__main__":
    # Run through the importable module, so command modules and this share one `node.cli.app`.
    from node.cli.app import main as _main

    _main()
