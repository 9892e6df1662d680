"""`tensornet node init|run|join|status|db check`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from node.cli.app import HomeOption, JsonOption, emit
from node.cli.submit import fetch
from node.client.home import ensure_private_dir, resolve_home
from node.client.wallet import read_hotkey
from node.config import CONFIG_FILE, GENESIS_FILE, VALIDATOR_KEY_FILE, NodeConfig, load_config, write_config
from node.errors import NodeError
from protocol.state.genesis import load_genesis

node_app = typer.Typer(help="Run a full or validator node.", no_args_is_help=True)
db_app = typer.Typer(help="Inspect the node's database.", no_args_is_help=True)
node_app.add_typer(db_app, name="db")


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")


ListenOption = Annotated[str | None, typer.Option("--listen", help="Listen multiaddr(s), comma-separated.")]
ApiOption = Annotated[str | None, typer.Option("--api", help="HTTP API HOST:PORT.")]
BootnodesOption = Annotated[str | None, typer.Option("--bootnodes", help="Full multiaddrs to dial, comma-separated.")]


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(x.strip() for x in text.split(",") if x.strip())


@node_app.command("init")
def init(
    genesis: Annotated[Path, typer.Option("--genesis", help="The chain's genesis.json.")],
    home: HomeOption = None,
    validator_key: Annotated[
        Path | None, typer.Option("--validator-key", help="Hotkey file that signs blocks (makes this a validator).")
    ] = None,
    listen: ListenOption = None,
    api: ApiOption = None,
    bootnodes: BootnodesOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config.toml.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a node home: config.toml (commented), genesis.json, node key, optional validator key."""
    from p2pnet.nodekey import load_or_create_node_key, peer_id_of  # start-up time: libp2p

    home = resolve_home(home)
    g = load_genesis(str(genesis))  # refuse a bad genesis before writing anything
    if (home / CONFIG_FILE).exists() and not force:
        raise NodeError(f"{home / CONFIG_FILE} exists; pass --force to overwrite it")
    ensure_private_dir(home)  # 0700: it will hold the node key (and a validator key)
    shutil.copyfile(genesis, home / GENESIS_FILE)
    cfg = NodeConfig().override(listen=_split(listen), api=api, bootnodes=_split(bootnodes))
    validator_address = None
    if validator_key is not None:
        kp = read_hotkey(validator_key)
        dest = home / VALIDATOR_KEY_FILE
        dest.write_bytes(validator_key.read_bytes())
        dest.chmod(0o600)
        validator_address = kp.address
        cfg = cfg.override(validator=True)
    write_config(home, cfg)
    peer_id = str(peer_id_of(load_or_create_node_key(home)))
    emit(
        {
            "home": str(home),
            "chain_id": g.chain_id,
            "genesis_hash": g.hash().hex(),
            "peer_id": peer_id,
            "validator": validator_address,
            "config": str(home / CONFIG_FILE),
        },
        as_json,
        title="node initialised",
    )


@node_app.command("run")
def run(
    home: HomeOption = None,
    bootnodes: BootnodesOption = None,
    validator: Annotated[
        bool | None, typer.Option("--validator/--no-validator", help="Propose blocks (needs validator_key).")
    ] = None,
    api: ApiOption = None,
    listen: ListenOption = None,
    metrics: Annotated[int | None, typer.Option("--metrics", help="Also serve /metrics on this port.")] = None,
) -> None:
    """Run the node until SIGINT/SIGTERM; config.toml supplies whatever flags leave out."""
    from node.daemon import run_node  # start-up time: trio, libp2p

    home = resolve_home(home)
    cfg = load_config(home).override(bootnodes=_split(bootnodes), validator=validator, api=api, listen=_split(listen))
    run_node(home, cfg, metrics_port=metrics)


@node_app.command("join")
def join(
    bootstrap: Annotated[str, typer.Option("--bootstrap", help="A bootstrap or node multiaddr with /p2p/<id>.")],
    genesis: Annotated[Path, typer.Option("--genesis", help="The chain's genesis.json.")],
    home: HomeOption = None,
    listen: ListenOption = None,
    api: ApiOption = None,
) -> None:
    """Initialise a home (if needed) pointed at a running network, then sync and follow it."""
    from node.daemon import run_node  # start-up time: trio, libp2p

    home = resolve_home(home)
    if not (home / CONFIG_FILE).exists():
        init(genesis=genesis, home=home, validator_key=None, listen=listen, api=api, bootnodes=bootstrap,
             force=False, as_json=False)
    cfg = load_config(home)
    if bootstrap not in cfg.bootnodes:
        cfg = cfg.override(bootnodes=(*cfg.bootnodes, bootstrap))
        write_config(home, cfg)
    run_node(home, cfg.override(listen=_split(listen), api=api))


@node_app.command("status")
def status(
    node: Annotated[str | None, typer.Option("--node", help="Node API URL (default from --home's config).")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Height, round, peers and sync distance of a running node."""
    s = fetch(node or _api_url(home), "/status")
    view = {k: s[k] for k in ("chain_id", "height", "round", "peers", "sync_distance", "validator", "mempool")}
    view["state_root"] = s["state_root"][:16] + "…"
    view["commit_latency_ms_p50"] = s.get("commit_latency_ms_p50")
    emit(s if as_json else view, as_json, title="node status")


def _api_url(home: Path | None) -> str | None:
    h = resolve_home(home)
    if (h / CONFIG_FILE).exists():
        return "http://" + load_config(h).api
    return None


@db_app.command("check")
def db_check(
    home: HomeOption = None,
    replay: Annotated[bool, typer.Option("--replay/--no-replay", help="Re-execute every commit from genesis.")] = True,
    drop_tree: Annotated[bool, typer.Option("--drop-tree", help="First forget the stored state (the next start "
                                            "rebuilds it by replaying the commits).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify the store: SQLite integrity, the commit hash chain, stored blocks, state roots and the state tree."""
    from node.dbcheck import check_store, drop_stored_tree  # start-up time: sqlite3, numpy

    home = resolve_home(home)
    if drop_tree:
        drop_stored_tree(home)
    report = check_store(home, replay=replay)
    emit(report, as_json, title="database check")
    if report["problems"]:
        raise NodeError(f"{len(report['problems'])} problem(s) in {home / 'chain.db'}")
