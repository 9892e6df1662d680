"""Where tensornet keeps its files: one home directory per node or user (spec/keys.md is normative).

    <home>/wallets/<wallet>/coldkey            encrypted coldkey, mode 0600
    <home>/wallets/<wallet>/hotkeys/<hotkey>   plain hotkey, mode 0600
    <home>/node_key                            the node's libp2p identity (p2pnet.nodekey), mode 0600
    <home>/data/                               the node's database and state

Every path is computed here so that no two modules disagree on the layout, and every name that
becomes a path component is checked, so `--name ../../etc` cannot escape the home.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from node.errors import NodeError

ENV_HOME = "TENSORNET_HOME"
DEFAULT_HOME = "~/.tensornet"
WALLETS = "wallets"
COLDKEY = "coldkey"
HOTKEYS = "hotkeys"
NODE_KEY = "node_key"  # the file name p2pnet.nodekey uses
DATA = "data"
DIR_MODE = 0o700

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class BadNameError(NodeError):
    """A wallet or hotkey name that is not a safe single path component."""


def resolve_home(home: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The home to use: an explicit `--home`, else $TENSORNET_HOME, else ~/.tensornet (absolute)."""
    env = os.environ if env is None else env
    chosen = home if home not in (None, "") else env.get(ENV_HOME) or DEFAULT_HOME
    return Path(chosen).expanduser().absolute()


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is 1-64 of [A-Za-z0-9._-], not starting with '.', '_' or '-'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadNameError(
            f"{kind} name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def wallets_dir(home: Path) -> Path:
    return home / WALLETS


def wallet_dir(home: Path, wallet: str) -> Path:
    return wallets_dir(home) / check_name("wallet", wallet)


def coldkey_path(home: Path, wallet: str) -> Path:
    return wallet_dir(home, wallet) / COLDKEY


def hotkeys_dir(home: Path, wallet: str) -> Path:
    return wallet_dir(home, wallet) / HOTKEYS


def hotkey_path(home: Path, wallet: str, hotkey: str) -> Path:
    return hotkeys_dir(home, wallet) / check_name("hotkey", hotkey)


def node_key_path(home: Path) -> Path:
    return home / NODE_KEY


def data_dir(home: Path) -> Path:
    return home / DATA


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if missing; a directory we create is 0700, since it holds keys."""
    if path.exists() and not path.is_dir():
        raise NodeError(f"{path} exists and is not a directory")
    try:
        for step in [*reversed(path.parents), path]:
            if not step.exists():
                step.mkdir(mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise NodeError(f"cannot create directory {path}: {exc.strerror or exc}") from exc
    return path
