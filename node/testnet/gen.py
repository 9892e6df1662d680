"""Generate a testnet: keys, a genesis, and one node home per validator (or per host).

`generate(out, hosts=[...])` writes `out/genesis.json`, `out/keys/<name>` (the funded accounts' keys,
hotkey files) and `out/<name>/` homes whose config.toml lists every other node's multiaddr as a bootnode,
so the homes can be copied to machines as they are. Every key (node, validator, account) is drawn from
the OS CSPRNG: knowing the chain id or the command line gives nobody a key. Every directory written is
0700 and every key file 0600. The API binds 127.0.0.1 unless `api_bind` says otherwise, since it
accepts transactions from whoever reaches it (spec/testnet.md §2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from node.client.home import NODE_KEY, check_name, ensure_private_dir
from node.client.wallet import read_hotkey, write_hotkey
from node.config import GENESIS_FILE, VALIDATOR_KEY_FILE, NodeConfig, write_config
from node.errors import NodeError
from p2pnet.nodekey import SEED_SIZE, keypair_from_seed, peer_id_of, write_node_key
from protocol.crypto import Keypair
from protocol.state.genesis import Endpoint, build_genesis

UNIT = 10**9
# Each validator hotkey's balance on a testnet (beside its stake): its votes' fees and a proposal's deposit.
VALIDATOR_BALANCE = 1_000 * UNIT
# Governance windows short enough to watch a proposal pass on a testnet (genesis defaults: 7,200 and 100 heights,
# minutes at the ~33 commits/s of 4 busy loopback validators): a minute to vote (three at the idle pace below),
# seconds more to execute.
TESTNET_VOTING_PERIOD = 1800
TESTNET_EXECUTION_DELAY = 30
# A local testnet's validators rest when idle for 100 ms, not a real node's 1 s (spec/consensus.md §D.2a): tests,
# `make run` and these windows count heights, and 4 loopback validators then commit ~9 heights/s idle, at ~9% of a
# core each (~20-25% without rest, ~3.5% at 1 s).
LOCAL_IDLE_INTERVAL_MS = 100


@dataclass(frozen=True)
class NodePlan:
    name: str
    home: Path
    host: str
    p2p_port: int
    api_port: int
    peer_id: str
    validator: Keypair
    node_seed: bytes = field(repr=False)  # the libp2p identity's seed: never printed
    api_bind: str = "127.0.0.1"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{self.host}/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def api(self) -> str:
        """Where the API answers: on the node's own machine only, unless bound to an address others reach."""
        reach = {"127.0.0.1": "127.0.0.1", "0.0.0.0": self.host if self.host != "0.0.0.0" else "127.0.0.1"}
        return f"http://{reach.get(self.api_bind, self.api_bind)}:{self.api_port}"


KEYS = "keys"  # out/keys/<account name>: the funded accounts' keys


def check_gov_windows(voting_period: int, execution_delay: int) -> None:
    """Refuse governance windows the genesis would refuse, naming the flag (spec/economics.md §2.1)."""
    if not 1 <= voting_period <= 10_000_000:
        raise NodeError(f"--gov-voting-period {voting_period}: use 1..10000000 heights")
    if not 0 <= execution_delay <= 10_000_000:
        raise NodeError(f"--gov-execution-delay {execution_delay}: use 0..10000000 heights")


def account(out: Path, name: str) -> Keypair:
    """The key of funded account `name` (owner-N, miner-N, ...) of the testnet generated in `out`."""
    path = Path(out) / KEYS / check_name("account", name)
    if not path.exists():
        raise NodeError(f"no key for account {name!r} at {path}: only accounts funded at generation have one")
    return read_hotkey(path)


def _new_accounts(out: Path, names: set[str]) -> dict[str, Keypair]:
    """A fresh random key per account name, written to `out/keys/<name>` (0600, directory 0700)."""
    keys_dir = ensure_private_dir(out / KEYS)
    keys = {}
    for name in sorted(names):
        keys[name] = Keypair.generate()
        write_hotkey(keys_dir / check_name("account", name), keys[name])
    return keys


def generate(
    out: Path,
    *,
    hosts: list[str],
    chain_id: str = "tensornet-testnet",
    p2p_base: int = 30400,
    api_base: int = 26700,
    validator_stake: int = 10_000 * UNIT,
    funded: dict[str, int] | None = None,
    subnets: list[tuple[str, str, dict[str, int]]] = (),
    genesis_params: dict | None = None,
    listen_host: str | None = None,
    api_bind: str = "127.0.0.1",
    validator_balance: int = 0,
    passive_balances: dict[bytes, int] | None = None,
) -> tuple[list[NodePlan], Path]:
    """Write the testnet; `hosts[i]` is the IP node i is reached at (127.0.0.1 for one machine).

    `api_bind` is the address every node's HTTP API listens on (0.0.0.0: every interface).
    `validator_balance` funds each validator hotkey (beside its stake) so it can pay for its votes.
    `passive_balances` adds accounts by public key with no keys written (a large genesis for benchmarks)."""
    if not hosts:
        raise NodeError("a testnet needs at least one host")
    for i in range(len(hosts)):  # keys already there would not match the genesis about to be written
        if (out / f"node{i}" / NODE_KEY).exists() or (out / f"node{i}" / VALIDATOR_KEY_FILE).exists():
            raise NodeError(f"{out / f'node{i}'} already holds node keys; generate into an empty directory")
    ensure_private_dir(out)
    plans = _plan_nodes(out, hosts, p2p_base, api_base, api_bind)
    funded = funded or {}
    accounts = _new_accounts(out, set(funded) | {owner for owner, _, _ in subnets})
    balances = {**(passive_balances or {}), **{accounts[name].public: amount for name, amount in funded.items()}}
    if validator_balance:
        balances.update({p.validator.public: validator_balance for p in plans})
    subnet_entries = [(accounts[owner].public, name, hp) for owner, name, hp in subnets]
    genesis = build_genesis(
        chain_id,
        validators=[
            (p.validator.public, validator_stake, Endpoint(p.peer_id, (p.multiaddr.split("/p2p/")[0],)))
            for p in plans
        ],
        balances=balances,
        subnets=subnet_entries,
        **(genesis_params or {}),
    )
    genesis_path = out / GENESIS_FILE
    genesis_path.write_text(genesis.to_json())
    for p in plans:
        _write_home(p, plans, genesis.to_json(), listen_host, api_bind)
    (out / "network.json").write_text(
        json.dumps(
            {
                "chain_id": chain_id,
                "genesis_hash": genesis.hash().hex(),
                "nodes": [
                    {"name": p.name, "home": str(p.home), "multiaddr": p.multiaddr, "api": p.api} for p in plans
                ],
            },
            indent=2,
        )
    )
    return plans, genesis_path


def _plan_nodes(out: Path, hosts: list[str], p2p_base: int, api_base: int, api_bind: str) -> list[NodePlan]:
    """One NodePlan per host, with fresh keys. Nodes that share a host get consecutive ports; a node alone on its
    host gets the base ports."""
    plans = []
    for i, host in enumerate(hosts):
        node_seed = os.urandom(SEED_SIZE)
        same_host = hosts.count(host) > 1
        plans.append(
            NodePlan(
                name=f"node{i}",
                home=out / f"node{i}",
                host=host,
                p2p_port=p2p_base + (i if same_host else 0),
                api_port=api_base + (i if same_host else 0),
                peer_id=str(peer_id_of(keypair_from_seed(node_seed))),
                validator=Keypair.generate(),
                node_seed=node_seed,
                api_bind=api_bind,
            )
        )
    return plans


def _write_home(p: NodePlan, plans: list[NodePlan], genesis_json: str, listen_host: str | None, api_bind: str) -> None:
    """Node `p`'s home (0700): the genesis, its node key and validator key, and a config.toml that dials every
    other node of `plans` as a bootnode."""
    ensure_private_dir(p.home)
    (p.home / GENESIS_FILE).write_text(genesis_json)
    write_node_key(p.home / NODE_KEY, p.node_seed)
    write_hotkey(p.home / VALIDATOR_KEY_FILE, p.validator)
    listen = listen_host or ("127.0.0.1" if p.host.startswith("127.") else "0.0.0.0")
    cfg = NodeConfig(
        listen=(f"/ip4/{listen}/tcp/{p.p2p_port}",),
        bootnodes=tuple(q.multiaddr for q in plans if q is not p),
        validator=True,
        api=f"{api_bind}:{p.api_port}",
        idle_interval_ms=LOCAL_IDLE_INTERVAL_MS,
    )
    write_config(p.home, cfg)
