"""`tensornet wallet ...`: create wallets, add hotkeys, list and show them, check a password.

Only `create` and `unlock` need the password; `list`, `show` and `new-hotkey` read the coldkey's
address from the clear part of its file.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from node.cli.app import (
    HomeOption,
    JsonOption,
    PasswordFileOption,
    cli_password,
    emit,
    stdout_console,
)
from node.client import home as layout
from node.client.wallet import DEFAULT_HOTKEY, KDF_PROFILES, Wallet, kdf_params, list_wallets
from node.log import get_logger

log = get_logger(__name__)
wallet_app = typer.Typer(no_args_is_help=True, help="Create and inspect wallets: an encrypted coldkey and its hotkeys.")

KdfOption = Annotated[
    str | None,
    typer.Option(
        "--kdf",
        help=f"Key-derivation cost: {' or '.join(KDF_PROFILES)} ('fast' is for tests only). Default $TENSORNET_KDF "
        "or 'default'.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(wallet_app, name="wallet")


def _print_keys(info: dict[str, Any], title: str) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("key")
    table.add_column("name")
    table.add_column("address")
    table.add_row("coldkey", escape(info["name"]), info["coldkey"])
    for name, address in info["hotkeys"].items():
        table.add_row("hotkey", escape(name), address)
    stdout_console().print(table)


@wallet_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="Wallet name.")],
    hotkey: Annotated[str, typer.Option("--hotkey", "-k", help="Name of the first hotkey.")] = DEFAULT_HOTKEY,
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    kdf: KdfOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a wallet: a new coldkey, encrypted with a password, and one hotkey."""
    params = kdf_params(kdf)
    if params == KDF_PROFILES["fast"]:
        log.warning("weak key derivation selected: use only for tests", kdf="fast")
    password = cli_password(password_file, confirm=True, what=f"new coldkey of wallet {name!r}")
    started = time.perf_counter()
    wallet = Wallet.create(home, name, password, hotkey=hotkey, kdf=params)
    log.debug("wallet created", wallet=name, path=str(wallet.path), seconds=round(time.perf_counter() - started, 3))
    info = wallet.info()
    if json_out:
        emit(info, True)
        return
    _print_keys(info, f"wallet {name} created in {wallet.path}")
    stdout_console().print(
        f"Back up {escape(str(wallet.coldkey_path))} and remember its password: "
        "without both, the coldkey and its stake are lost."
    )


@wallet_app.command("list")
def list_(home: HomeOption = None, json_out: JsonOption = False) -> None:
    """List the wallets in the home (no password needed)."""
    root = layout.resolve_home(home)
    rows: list[dict[str, Any]] = []
    for entry in list_wallets(root):
        if isinstance(entry, Wallet):
            rows.append(
                {"name": entry.name, "coldkey": entry.address, "hotkeys": entry.hotkey_names(), "path": str(entry.path)}
            )
        else:
            name, error = entry
            rows.append({"name": name, "error": str(error)})
    if json_out:
        emit({"home": str(root), "wallets": rows}, True)
    elif not rows:
        stdout_console().print(f"no wallets in {escape(str(layout.wallets_dir(root)))}")
    else:
        emit([{**row, "hotkeys": ", ".join(row.get("hotkeys", []))} for row in rows], False, title=f"wallets in {root}")


@wallet_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Wallet name.")],
    home: HomeOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show a wallet's coldkey and hotkey addresses (no password needed)."""
    info = Wallet.load(home, name).info()
    if json_out:
        emit(info, True)
    else:
        _print_keys(info, f"wallet {name} ({info['path']})")


@wallet_app.command("new-hotkey")
def new_hotkey(
    name: Annotated[str, typer.Argument(help="Wallet name.")],
    hotkey: Annotated[str, typer.Option("--hotkey", "-k", help="Name of the new hotkey (e.g. gpu1).")],
    home: HomeOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add a hotkey to a wallet, e.g. one per miner GPU worker (no password needed)."""
    wallet = Wallet.load(home, name)
    keypair = wallet.new_hotkey(hotkey)
    result = {"wallet": name, "hotkey": hotkey, "address": keypair.address, "path": str(wallet.hotkey_path(hotkey))}
    emit(result, json_out, title=f"new hotkey {hotkey} in wallet {name}")


@wallet_app.command("unlock")
def unlock(
    name: Annotated[str, typer.Argument(help="Wallet name.")],
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Check that the password opens the wallet's coldkey (exit 1 if it does not)."""
    wallet = Wallet.load(home, name)
    keypair = wallet.coldkey(cli_password(password_file, what=f"coldkey of wallet {name!r}"))
    emit({"wallet": name, "coldkey": keypair.address, "unlocked": True}, json_out, title="coldkey unlocked")

