"""Generate a testnet: keys, a genesis, and one node home per validator (or per host).

`generate(out, hosts=[...])` writes `out/genesis.json`, `out/keys/` (the funded accounts' seeds:
test networks only) and `out/<name>/` homes whose config.toml lists every other node's
multiaddr as a bootnode, so the homes can be copied to machines as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from node.config import GENESIS_FILE, VALIDATOR_KEY_FILE, NodeConfig, write_config
from node.errors import NodeError
from node.wallet import write_hotkey
from p2pnet.nodekey import keypair_from_seed, peer_id_of, write_node_key
from protocol.crypto import Keypair
from protocol.genesis import Endpoint, build_genesis

UNIT = 10**9


@dataclass(frozen=True)
class NodePlan:
    name: str
    home: Path
    host: str
    p2p_port: int
    api_port: int
    peer_id: str
    validator: Keypair

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{self.host}/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def api(self) -> str:
        return f"http://{self.host if self.host != '0.0.0.0' else '127.0.0.1'}:{self.api_port}"


def _seed(tag: str, chain_id: str) -> bytes:
    # Deterministic per testnet so `gen` twice gives the same network; never for real value.
    import hashlib

    return hashlib.blake2b(f"tensornet-testnet/{chain_id}/{tag}".encode(), digest_size=32).digest()


def account(chain_id: str, name: str) -> Keypair:
    """A funded test account of the generated genesis (owner, miner-N, validator-N, ...)."""
    return Keypair(_seed(f"account/{name}", chain_id))


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
) -> tuple[list[NodePlan], Path]:
    """Write the testnet; `hosts[i]` is the IP node i is reached at (127.0.0.1 for one machine)."""
    if not hosts:
        raise NodeError("a testnet needs at least one host")
    out.mkdir(parents=True, exist_ok=True)
    plans = []
    for i, host in enumerate(hosts):
        node_seed = _seed(f"node/{i}", chain_id)
        same_host = hosts.count(host) > 1
        plans.append(
            NodePlan(
                name=f"node{i}",
                home=out / f"node{i}",
                host=host,
                p2p_port=p2p_base + (i if same_host else 0),
                api_port=api_base + (i if same_host else 0),
                peer_id=str(peer_id_of(keypair_from_seed(node_seed))),
                validator=Keypair(_seed(f"validator/{i}", chain_id)),
            )
        )
    balances = {account(chain_id, name).public: amount for name, amount in (funded or {}).items()}
    subnet_entries = [(account(chain_id, owner).public, name, hp) for owner, name, hp in subnets]
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
    for i, p in enumerate(plans):
        p.home.mkdir(parents=True, exist_ok=True)
        (p.home / GENESIS_FILE).write_text(genesis.to_json())
        key_path = p.home / "node_key"
        if not key_path.exists():
            write_node_key(key_path, _seed(f"node/{i}", chain_id))
        vk = p.home / VALIDATOR_KEY_FILE
        if not vk.exists():
            write_hotkey(vk, p.validator)
        listen = listen_host or ("127.0.0.1" if p.host.startswith("127.") else "0.0.0.0")
        cfg = NodeConfig(
            listen=(f"/ip4/{listen}/tcp/{p.p2p_port}",),
            bootnodes=tuple(q.multiaddr for q in plans if q is not p),
            validator=True,
            api=f"{'127.0.0.1' if listen == '127.0.0.1' else '0.0.0.0'}:{p.api_port}",
        )
        write_config(p.home, cfg)
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
