"""A node home: `config.toml` (commented, flags override it), the genesis, keys and the database.

Layout of `--home DIR`:
    config.toml      this node's settings
    genesis.json     the chain's genesis (copied in by `node init`)
    node_key         libp2p identity (0600)
    validator_key    the validator hotkey that signs blocks (0600; validators only)
    chain.db         SQLite store (WAL)
    peers.json       known peers
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from node.client.home import ensure_private_dir
from protocol.errors import ProtocolError

CONFIG_FILE = "config.toml"
GENESIS_FILE = "genesis.json"
VALIDATOR_KEY_FILE = "validator_key"


class ConfigError(ProtocolError):
    """A missing or malformed node home or config file."""


@dataclass(frozen=True)
class NodeConfig:
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/30333",)
    external_addrs: tuple[str, ...] = ()
    bootnodes: tuple[str, ...] = ()
    validator: bool = False
    api: str = "127.0.0.1:26657"
    target_peers: int = 8
    leader_timeout_ms: int = 250
    min_round_delay_ms: int = 25
    idle_interval_ms: int = 1000
    max_block_txs: int = 1000
    snapshot_every: int = 50
    log_format: str = "text"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def override(self, **flags: Any) -> NodeConfig:
        """Command-line flags win over the file; None means 'not given'."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


TEMPLATE = """\
# tensornet node configuration. Command-line flags override these values.

# libp2p listen multiaddrs (TCP; Noise + yamux).
listen = {listen}

# Addresses to advertise to peers when they differ from the listen ones (NAT, containers).
external_addrs = {external_addrs}

# Peers to dial at start: full multiaddrs ending in /p2p/<peer id> (a bootstrap node, or any node).
bootnodes = {bootnodes}

# Propose and sign blocks with {home}/validator_key. Only committee members' blocks count.
validator = {validator}

# HTTP API and explorer (host:port); /metrics serves Prometheus. Keep it on loopback unless firewalled.
api = "{api}"

# Peers to keep connected.
target_peers = {target_peers}

# Consensus timing: wait this long for a round's leader before proposing without it, and at least
# this long between two of our own blocks.
leader_timeout_ms = {leader_timeout_ms}
min_round_delay_ms = {min_round_delay_ms}

# Rest when idle: with no transaction to propose or waiting in the DAG to commit, wait this long between
# two of our own blocks (a transaction ends the rest at once). 0 = never rest (a round every
# min_round_delay_ms even when idle). Local timing only: safety never depends on it.
idle_interval_ms = {idle_interval_ms}

# At most this many transactions in one of our blocks (held to 4096, the most a block may carry on the wire).
max_block_txs = {max_block_txs}

# Save a state snapshot every N commits (restart replays at most N-1 commits).
snapshot_every = {snapshot_every}

# Log format: "text" or "json".
log_format = "{log_format}"
"""


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def render(config: NodeConfig, home: Path) -> str:
    return TEMPLATE.format(
        listen=_toml_list(config.listen),
        external_addrs=_toml_list(config.external_addrs),
        bootnodes=_toml_list(config.bootnodes),
        validator="true" if config.validator else "false",
        api=config.api,
        target_peers=config.target_peers,
        leader_timeout_ms=config.leader_timeout_ms,
        min_round_delay_ms=config.min_round_delay_ms,
        idle_interval_ms=config.idle_interval_ms,
        max_block_txs=config.max_block_txs,
        snapshot_every=config.snapshot_every,
        log_format=config.log_format,
        home=home,
    )


def load_config(home: Path) -> NodeConfig:
    path = home / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path} not found: run `tensornet node init --home {home} --genesis FILE` first")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    known = {f.name: f for f in fields(NodeConfig) if f.name != "extra"}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    defaults = NodeConfig()
    for name, value in raw.items():
        want = type(getattr(defaults, name))
        if want is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: {name} must be a list of strings")
            value = tuple(value)
        elif want is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: {name} must be true or false")
        elif not isinstance(value, want) or isinstance(value, bool) != (want is bool):
            raise ConfigError(f"{path}: {name} must be a {want.__name__}, got {value!r}")
        values[name] = value
    for name in ("leader_timeout_ms", "min_round_delay_ms", "idle_interval_ms"):
        if values.get(name, 0) < 0:
            raise ConfigError(f"{path}: {name} must be >= 0, got {values[name]}")
    if values.get("log_format", "text") not in ("text", "json"):
        raise ConfigError(f"{path}: log_format must be \"text\" or \"json\"")
    return replace(defaults, **values)


def write_config(home: Path, config: NodeConfig) -> Path:
    ensure_private_dir(home)  # a home holds the node's keys: 0700 when we create it
    path = home / CONFIG_FILE
    path.write_text(render(config, home))
    return path


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)
