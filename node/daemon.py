"""`tensornet node run`: the node's parts wired on a libp2p stack, with the HTTP API, until a signal.

`Node` only wires them; each part has a file of its own (one Trio nursery runs them all, and every
network wait is under a deadline):
- node/service.py: what peers send us: requests served from the store, gossiped and pushed blocks and
  transactions verified inside the gossip validator;
- node/proposer.py: signs, stores (fsync) and only then sends our block when the threshold clock says so;
- node/sync.py: the fetcher (missing ancestors, sender first) and the synchronizer (commit ranges when far
  behind, round probes when stalled: how a late or restarted node catches up);
- node/health.py: our Status, peers' claims weighed, /health's reasons and the metrics gauges;
- the API server and the committee links (below).
SIGINT/SIGTERM cancel the nursery; the store is closed last.
"""

from __future__ import annotations

import contextlib
import cProfile
import itertools
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig

from node.api.app import serve_api
from node.chain import Chain, CommitInfo
from node.client.wallet import read_hotkey
from node.concentration import subnet_concentration
from node.config import GENESIS_FILE, VALIDATOR_KEY_FILE, NodeConfig, parse_hostport
from node.economics import lifecycle_view
from node.health import Health, count_commit, own_status, refresh_metrics
from node.log import configure
from node.metrics import NodeMetrics
from node.proposer import Arrivals, Proposer
from node.service import GossipIn, RequestService, push_to_owners
from node.sync import Fetcher, Synchronizer, refresh_statuses
from p2pnet.discovery import DiscoveryConfig
from p2pnet.gossip import GossipMessage
from p2pnet.nodekey import load_or_create_node_key
from p2pnet.stack import open_stack
from protocol import crypto
from protocol.consensus.core import CoreParams
from protocol.messages import Status
from protocol.state.genesis import load_genesis

log = logging.getLogger("node")
PROFILE_ENV = "TENSORNET_PROFILE"


class Node:
    def __init__(self, home: Path, config: NodeConfig, metrics_port: int | None = None) -> None:
        self.home = home
        self.config = config
        self.metrics_port = metrics_port
        genesis = load_genesis(str(home / GENESIS_FILE))
        keypair = read_hotkey(home / VALIDATOR_KEY_FILE) if config.validator else None
        params = CoreParams(leader_timeout_ms=config.leader_timeout_ms, min_round_delay_ms=config.min_round_delay_ms,
                            idle_interval_ms=config.idle_interval_ms)
        self.chain = Chain(home, genesis, keypair=keypair, params=params, snapshot_every=config.snapshot_every,
                           max_block_txs=config.max_block_txs)  # was read from config.toml but never applied
        if config.validator and not self.chain.is_validator:
            log.warning(
                "validator key %s is not in epoch %d's committee: following as a full node until a committee "
                "includes it", keypair.address, self.chain.epoch,
            )
        self.metrics = NodeMetrics()
        self.chain.on_commit = self._observe
        self.stack: Any = None
        self.peer_id: Any = None
        self.listen_addrs: list[str] = []
        self.api_addr: str | None = None
        self.fatal: Exception | None = None
        self._stop = trio.Event()
        self.arrivals = Arrivals()
        stack = self._stack_now
        self.fetcher = Fetcher(self.chain, self.metrics, stack=stack, wake=self.arrivals.set, halt=self._halt)
        self.sync = Synchronizer(self.chain, self.fetcher, stack)
        self.health = Health(self.chain, stack, catching_up=lambda: self.sync.catching_up)
        self.gossip_in = GossipIn(
            self.chain, self.metrics, own_peer=lambda: self.peer_id, stack=stack,
            want=self.fetcher.want, wake=self.arrivals.set, halt=self._halt,
        )
        self.service = RequestService(self.chain, on_push=self.gossip_in.on_block)

    def _stack_now(self) -> Any:
        """The p2p stack once `run` opened it (None before): the parts look it up on each use."""
        return self.stack

    # --- the view the API reads ---------------------------------------------------------------

    def status(self) -> Status:
        return own_status(self.chain)

    def chain_peers(self) -> int:
        return self.health.chain_peers()

    def sync_distance(self) -> int:
        """Rounds peers are ahead of us, as far as f+1 of them agree (node/health.py)."""
        return self.health.sync_distance()

    def last_commit_age_ms(self) -> int:
        return self.health.last_commit_age_ms()

    def proven_behind(self) -> int:
        return self.health.proven_behind()

    def health_reasons(self) -> list[str]:
        return self.health.reasons()

    @property
    def commit_sync_blocks(self) -> int:
        """Blocks fetched through commit ranges (far-behind catch-up)."""
        return self.sync.commit_sync_blocks

    def refresh_metrics(self) -> None:
        refresh_metrics(self.metrics, self.chain, self.stack)

    def subnet_obj(self, netuid: int) -> dict[str, Any]:
        sn = self.chain.state.subnet(netuid)
        assert sn is not None
        hp = sn.hp
        return {
            "netuid": netuid,
            "name": sn.name,
            "owner": crypto.address(sn.owner),
            "neurons": len(sn.neurons),
            "tempo": hp.tempo,
            "burn": sn.burn,
            "hyperparameters": {k: getattr(hp, k) for k in hp.__dataclass_fields__},
            **lifecycle_view(self.chain.state, sn),
            "concentration": subnet_concentration(self.chain.state, sn),
        }

    async def submit_tx(self, data: bytes, gossip: bool = True) -> bytes:
        """API path: admit locally, then gossip to the validators."""
        digest = self.chain.submit_tx(data)
        if gossip:
            await self._gossip_tx(data)
        return digest

    async def push_to_owners(self, digests: list[bytes]) -> int:
        """API path for admitted bulk transactions: each goes to the validator that proposes it (node/service.py)."""
        return await push_to_owners(self.chain, self.stack, digests)

    # --- wiring -------------------------------------------------------------------------------

    def _observe(self, c: CommitInfo) -> None:
        self.health.note_commit()
        count_commit(self.metrics, c)

    async def _gossip_tx(self, data: bytes) -> None:
        gossip = self.stack.gossip if self.stack is not None else None
        if gossip is None:
            return
        try:
            await gossip.publish(gossip.topic("transactions"), data)
        except Exception as exc:  # still pending locally; a validator here will include it
            log.warning("could not gossip transaction %s: %s", crypto.digest(data).hex()[:16], exc)

    def _halt(self, exc: Exception) -> None:
        log.critical("SAFETY VIOLATION, halting: %s", exc)
        self.fatal = exc
        self._stop.set()

    async def _committee_links(self) -> None:
        """Keep connected to the current and the predicted next committee (p2pnet redials them, drops
        zombie links, and bans them only briefly without proof of fault); re-checked every 2 s."""
        protected: dict[str, list[str]] = {}
        while True:
            state = self.chain.state
            members = (*state.epoch_committee, *state.committee())
            now = {m.peer_id: list(m.multiaddrs) for m in members if m.peer_id}
            if now != protected:
                protected = now
                self.stack.set_protected(now)
            await trio.sleep(2.0)

    async def _serve_api(self, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_hostport(self.config.api)
        cfg = HyperConfig()
        cfg.bind = [f"{host}:{port}"] + ([f"{host}:{self.metrics_port}"] if self.metrics_port else [])
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("hypercorn.error")
        cfg.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:  # hypercorn runs in a thread of its own (node/api.py)
            urls = await nursery.start(serve_api, self, cfg)
            self.api_addr = urls[0] if urls else f"http://{host}:{port}"
            task_status.started(self.api_addr)

    async def run(self, *, ready: Any = None) -> None:
        node_key = load_or_create_node_key(self.home)
        c = self.config
        disc = DiscoveryConfig(target_peers=c.target_peers, dht=False)
        async with open_stack(
            node_key,
            listen=c.listen,
            external_addrs=c.external_addrs,  # config.toml documents it; it was read but never announced
            chain_id=self.chain.chain_id,
            status_fn=self.status,
            bootstrap=c.bootnodes,
            home=self.home,
            discovery=disc,
            # Blocks and transactions carry their own ed25519 signatures, so a second libp2p
            # signature per gossip message only costs a sign and a verify per hop.
            gossip_options={"strict_signing": False},
        ) as stack:
            self.stack = stack
            self.peer_id = stack.host.peer_id
            # a next-epoch block held early that fails at the epoch switch costs its sender
            self.chain.on_offence = lambda peer: stack.host.limiter.penalize(peer, "invalid_block")
            self.listen_addrs = [str(a) for a in stack.host.addrs]
            self.service.register(stack.reqresp)
            blocks = await stack.gossip.subscribe(stack.gossip.topic("blocks"), self.gossip_in.on_block)
            txs = await stack.gossip.subscribe(stack.gossip.topic("transactions"), self.gossip_in.on_tx)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, blocks)
                nursery.start_soon(_drain, txs)
                nursery.start_soon(self.fetcher.run)
                nursery.start_soon(self.sync.run)
                nursery.start_soon(refresh_statuses, stack)
                nursery.start_soon(self._committee_links)
                if self.chain.keypair is not None:
                    nursery.start_soon(Proposer(self.chain, stack, self.arrivals, nursery.start_soon).run)
                self.chain.on_evidence = lambda data: nursery.start_soon(self._gossip_tx, data)
                api = await nursery.start(self._serve_api)
                log.info(
                    "node up: chain %s height %d, peer %s, api %s, validator %s",
                    self.chain.chain_id, self.chain.height, self.peer_id, api, self.chain.is_validator,
                )
                if ready is not None:
                    ready(self)
                nursery.start_soon(self._signals)
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                log.info("received %s: shutting down", signal.Signals(sig).name)
                self._stop.set()
                return

    def close(self) -> None:
        self.chain.close()


async def _drain(channel: trio.MemoryReceiveChannel[GossipMessage]) -> None:
    # Processing happened in the validator; delivered messages need nothing more.
    async for _ in channel:
        pass


def run_node(home: Path, config: NodeConfig, metrics_port: int | None = None) -> None:
    if config.log_format == "json":
        configure("json")
    node = Node(home, config, metrics_port)
    with _profiled(os.environ.get(PROFILE_ENV)):
        try:
            trio.run(node.run)
        finally:
            node.close()
    if node.fatal is not None:
        raise SystemExit(3)


@contextlib.contextmanager
def _profiled(folder: str | None) -> Iterator[None]:
    """With TENSORNET_PROFILE=FOLDER the Trio thread runs under cProfile, timed by its own CPU clock (time blocked in
    epoll counts nothing). SIGUSR1 writes FOLDER/<pid>-<k>.prof (k = 1, 2, ...) and starts a new window, so a bench
    can cut out start-up and warm-up; a clean shutdown writes FOLDER/<pid>-end.prof. Other threads (the API server,
    the SQLite writer) are not profiled. bench.consensus --profile reads these files."""
    if not folder:
        yield
        return
    prof = cProfile.Profile(time.thread_time)
    windows = itertools.count(1)

    def dump(name: str) -> None:
        prof.disable()
        tmp = os.path.join(folder, f"{os.getpid()}-{name}.tmp")
        prof.dump_stats(tmp)
        os.replace(tmp, tmp[: -len(".tmp")] + ".prof")  # whole files only: the bench polls for them

    def on_usr1(_sig: int, _frame: Any) -> None:
        dump(str(next(windows)))
        prof.clear()
        prof.enable()

    signal.signal(signal.SIGUSR1, on_usr1)
    prof.enable()
    try:
        yield
    finally:
        dump("end")
