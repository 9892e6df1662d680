"""One node's whole p2p stack in one `async with`: host, request/response, handshake, gossip, discovery.

node/, the bootstrap command, the multi-process tests and the benchmark all start the same pieces in
the same order, so the order lives here once: host first, then the reqresp reader nursery, then the
handshake watcher (before any dial, so no connection escapes it), gossip, and discovery last.
A stack without `chain_id` is discovery-only: what a bootstrap node runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from libp2p.crypto.keys import KeyPair

from p2pnet import hardening
from p2pnet.discovery import Discovery, DiscoveryConfig
from p2pnet.gossip import Gossip, open_gossip
from p2pnet.handshake import Handshake, StatusFn
from p2pnet.host import Host, open_host
from p2pnet.limits import Limits
from p2pnet.metrics import Metrics
from p2pnet.peerstore import FILE_NAME as PEERS_FILE
from p2pnet.peerstore import PeerStore
from p2pnet.reqresp import ReqResp


@dataclass
class Stack:
    host: Host
    reqresp: ReqResp
    discovery: Discovery
    store: PeerStore
    metrics: Metrics
    gossip: Gossip | None = None
    handshake: Handshake | None = None

    def set_protected(self, peers: Mapping[str, Sequence[str]]) -> None:
        """Keep connected to `peers` (peer id -> multiaddrs: the committee), redialling with backoff, and
        ban them only briefly unless they prove fault (see `Discovery.set_protected`)."""
        self.discovery.set_protected(peers)


@asynccontextmanager
async def open_stack(
    keypair: KeyPair,
    *,
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
    external_addrs: Sequence[str] = (),
    chain_id: str | None = None,
    status_fn: StatusFn | None = None,
    bootstrap: Sequence[str] = (),
    home: Path | str | None = None,
    discovery: DiscoveryConfig | None = None,
    gossip_options: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[Stack]:
    """Start everything; on exit (error, cancel, signal) stop it in reverse order and save the peer store."""
    if (chain_id is None) != (status_fn is None):
        raise ValueError("chain_id and status_fn go together (both for a chain node, neither for a bootstrap)")
    metrics = Metrics()
    store = PeerStore(Path(home) / PEERS_FILE if home is not None else None)
    async with hardening.unwrap_single_error(), AsyncExitStack() as stack:
        host = await stack.enter_async_context(
            open_host(keypair, listen=listen, external_addrs=external_addrs, limits=limits)
        )
        # Gossip is entered before the nursery below, so the two unwind in the reverse order they
        # were opened (entering it inside the nursery but leaving it after was a nursery misnesting).
        # Nothing dials before discovery starts, so the handshake watcher still sees every connection.
        gossip = None
        if chain_id is not None:
            gossip = await stack.enter_async_context(
                open_gossip(host, chain_id, metrics=metrics, **(gossip_options or {}))
            )
        async with trio.open_nursery() as nursery:
            reqresp = ReqResp(host, metrics)
            await nursery.start(reqresp.run)
            handshake = None
            if chain_id is not None:
                handshake = Handshake(host, reqresp, status_fn, metrics=metrics)
                await nursery.start(handshake.run)
            disc = Discovery(host, reqresp, store, list(bootstrap), config=discovery, metrics=metrics)
            await nursery.start(disc.run)
            try:
                yield Stack(host, reqresp, disc, store, metrics, gossip, handshake)
            finally:
                nursery.cancel_scope.cancel()
