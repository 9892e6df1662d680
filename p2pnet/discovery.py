"""Finding peers: bootstrap addresses, a Kademlia DHT, and peer exchange; keeping a target peer count.

A node given a single bootstrap address finds the rest three ways, cheapest first:
1. peer exchange (`/tensornet/px/1`): the request carries our own listen addresses (so the server
   learns where to reach us; an inbound connection only shows an ephemeral port), the response lists
   peers the server is connected to, with their addresses;
2. the py-libp2p Kademlia DHT (SERVER mode by default; bootstrap nodes always) walked for our own key;
3. the persistent peer store (`p2pnet.peerstore`), so a restarted node rejoins without the bootstrap.

The maintenance loop keeps `target_peers` connections: it redials bootstraps and known peers with
exponential backoff, asks a few peers for PX, and refreshes the DHT, each step under a deadline.

Two more loops keep a validator in its committee (spec/p2p.md, "Committee connectivity"):
- the link keeper dials every protected peer (`set_protected`: the current and next committee) that is
  not connected and not banned, with its own short backoff (0.5 s doubling to 15 s, jittered, reset once
  connected), so a peer whose ban expired or whose connection died is back within seconds;
- the liveness check pings a peer that has not answered for `ping_interval` and closes a connection
  with no answered ping for `zombie_timeout`: a dead connection that libp2p still lists (a frozen or
  vanished peer, a half-closed socket) would otherwise block the keeper forever. A slow peer that still
  answers within the timeout keeps its connection.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError as Libp2pPeerStoreError
from libp2p.tools.anyio_service import background_trio_service

from p2pnet.errors import P2PError
from p2pnet.handshake import ConnectionEvents
from p2pnet.metrics import Metrics
from p2pnet.peerstore import MAX_ADDRS, PeerStore, PeerStoreError, check_addr, check_peer_id, split_p2p_addr
from p2pnet.reqresp import ProtocolSpec, Refused, ReqResp, RequestError
from protocol import codec
from protocol.errors import ProtocolError

log = logging.getLogger("p2pnet.discovery")

PX_PROTOCOL = "/tensornet/px/1"
PX_MAX_PEERS = 64
PX_SPEC = ProtocolSpec(PX_PROTOCOL, max_request=4 * 1024, max_response=64 * 1024, timeout=5.0, server_timeout=5.0)


@dataclass(frozen=True)
class DiscoveryConfig:
    target_peers: int = 8
    interval: float = 1.0  # seconds between maintenance rounds
    px_interval: float = 5.0  # seconds between peer-exchange rounds once the target is reached
    px_fanout: int = 3  # peers asked per PX round
    dial_parallel: int = 4
    dial_timeout: float = 5.0
    dht: bool = True
    dht_server: bool = True
    dht_interval: float = 30.0
    dht_timeout: float = 10.0
    save_interval: float = 5.0
    keep_interval: float = 0.5  # seconds between passes of the protected-peer keeper
    redial_base: float = 0.5  # first backoff after a failed dial of a protected peer
    redial_max: float = 15.0  # backoff ceiling for protected peers (and bootstraps, see PeerStore)
    ping_interval: float = 5.0  # ping a peer that has not answered for this long
    zombie_timeout: float = 20.0  # close a connection with no answered ping for this long


def encode_px_request(addrs: list[str]) -> bytes:
    return codec.encode([a for a in addrs][:MAX_ADDRS])


def decode_px_request(data: bytes) -> list[str]:
    try:
        obj = codec.decode(data, max_size=PX_SPEC.max_request)
    except ProtocolError as exc:
        raise Refused(f"PX request is not canonical CBOR: {exc}") from exc
    if not isinstance(obj, list) or len(obj) > MAX_ADDRS:
        raise Refused(f"PX request must be a list of at most {MAX_ADDRS} addresses")
    try:
        return [check_addr(a) for a in obj]
    except PeerStoreError as exc:
        raise Refused(str(exc)) from exc


def encode_px_response(peers: list[tuple[str, list[str]]]) -> bytes:
    return codec.encode([[pid, addrs[:MAX_ADDRS]] for pid, addrs in peers[:PX_MAX_PEERS]])


def decode_px_response(data: bytes) -> list[tuple[str, list[str]]]:
    """Peers from a PX response; malformed entries raise PeerStoreError (the whole answer is refused)."""
    try:
        obj = codec.decode(data, max_size=PX_SPEC.max_response)
    except ProtocolError as exc:
        raise PeerStoreError(f"PX response is not canonical CBOR: {exc}") from exc
    if not isinstance(obj, list) or len(obj) > PX_MAX_PEERS:
        raise PeerStoreError(f"PX response must be a list of at most {PX_MAX_PEERS} peers")
    out = []
    for entry in obj:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
            raise PeerStoreError("PX entry must be [peer_id, [addrs]]")
        if len(entry[1]) > MAX_ADDRS:
            raise PeerStoreError(f"PX entry with more than {MAX_ADDRS} addresses")
        out.append((check_peer_id(entry[0]), [check_addr(a) for a in entry[1]]))
    return out


def _transport_addr(addr: str, peer_id: str) -> str | None:
    """`addr` without its /p2p/ suffix if it is a dialable address of `peer_id`, else None (logged)."""
    try:
        if "/p2p/" not in addr:
            return check_addr(addr)
        base, pid = split_p2p_addr(addr)
    except PeerStoreError as exc:
        log.warning("address of %s skipped: %s", peer_id, exc)
        return None
    if pid != peer_id:
        log.warning("address %s is not of %s; skipped", addr, peer_id)
        return None
    return base


def _transport_addrs(host: Any) -> list[str]:
    """Our dialable addresses without /p2p/ (0.0.0.0 listeners are announced as 127.0.0.1)."""
    out = []
    for a in host.libp2p.get_addrs():
        text = str(a)
        if "/p2p/" in text:
            text = text[: text.index("/p2p/")]
        text = text.replace("/ip4/0.0.0.0/", "/ip4/127.0.0.1/")
        try:
            out.append(check_addr(text))
        except PeerStoreError:
            continue
    return out


class Discovery:
    """Peer discovery and connection maintenance for one host (a `p2pnet.host.Host`)."""

    def __init__(
        self,
        host: Any,
        reqresp: ReqResp,
        store: PeerStore,
        bootstrap: list[str] = (),
        *,
        config: DiscoveryConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.host = host
        self.reqresp = reqresp
        self.store = store
        self.config = config or DiscoveryConfig()
        self.metrics = metrics if metrics is not None else reqresp.metrics
        self.bootstrap_ids: set[str] = set()
        for text in bootstrap:
            base, pid = split_p2p_addr(text)  # typed error for a bad bootstrap address: a config mistake
            if pid == str(host.peer_id):
                continue
            store.add(pid, [base], bootstrap=True)
            self.bootstrap_ids.add(pid)
        self.dht: KadDHT | None = None
        self.protected: frozenset[str] = frozenset()
        self._redial: dict[str, tuple[int, float]] = {}  # protected peer -> (failures, trio time of next dial)
        self._alive: dict[str, float] = {}  # connected peer -> trio time it last proved alive
        self._pinging: set[str] = set()
        self._dialing: set[str] = set()
        self._wake = trio.Event()
        reqresp.register(PX_SPEC, self._serve_px)

    # --- peer exchange --------------------------------------------------------------------------

    async def _serve_px(self, peer: ID, data: bytes) -> bytes:
        addrs = decode_px_request(data)
        if addrs:
            self.store.add(str(peer), addrs)
        connected = {str(p) for p in self.host.peers()}
        known = [
            (r.peer_id, r.addrs)
            for r in self.store.peers.values()
            if r.peer_id in connected and r.peer_id != str(peer) and r.addrs
        ]
        random.shuffle(known)
        return encode_px_response(known[:PX_MAX_PEERS])

    async def exchange(self, peer: ID) -> int:
        """Ask `peer` for its peers; returns how many new peers we learned."""
        try:
            data = await self.reqresp.request(peer, PX_PROTOCOL, encode_px_request(_transport_addrs(self.host)))
            peers = decode_px_response(data)
        except RequestError as exc:
            log.debug("PX with %s failed: %s", peer, exc)
            return 0
        except PeerStoreError as exc:
            self.metrics.reject("px:malformed")
            self.host.limiter.penalize(str(peer), "malformed")
            log.info("bad PX answer from %s: %s", peer, exc)
            return 0
        me = str(self.host.peer_id)
        new = 0
        for pid, addrs in peers:
            if pid == me or not addrs:
                continue
            new += pid not in self.store
            self.store.add(pid, addrs)
        return new

    # --- dialing --------------------------------------------------------------------------------

    async def dial(self, peer_id: str) -> bool:
        rec = self.store.peers.get(peer_id)
        if rec is None or peer_id in self._dialing:
            return False
        self._dialing.add(peer_id)
        try:
            for addr in rec.dial_addrs():
                try:
                    await self.host.connect(addr, deadline=self.config.dial_timeout)
                except P2PError as exc:
                    log.debug("dial %s failed: %s", addr, exc)
                    continue
                self.store.connected(peer_id)
                return True
            delay = self.store.failed(peer_id)
            self.metrics.request_errors["dial:failed"] += 1
            log.debug("all addresses of %s failed; next try in %.1f s", peer_id, delay)
            return False
        finally:
            self._dialing.discard(peer_id)

    # --- committee links ------------------------------------------------------------------------

    def set_protected(self, peers: Mapping[str, Sequence[str]]) -> None:
        """Keep a connection to each of `peers` (peer id -> multiaddrs, with or without /p2p/).

        Replaces the previous set. The addresses go to the peer store; the limiter caps their bans
        at the cool-off (`Limits.protected_ban_seconds`). A bad entry is logged and skipped: it comes
        from chain state, which any staker can write an endpoint into.
        """
        me = str(self.host.peer_id)
        ids: set[str] = set()
        for pid, addrs in peers.items():
            try:
                pid = check_peer_id(pid)
            except PeerStoreError as exc:
                log.warning("protected peer skipped: %s", exc)
                continue
            if pid == me:
                continue
            ids.add(pid)
            clean = [a for a in (_transport_addr(a, pid) for a in list(addrs)[:MAX_ADDRS]) if a is not None]
            if clean:
                self.store.add(pid, clean)
        self.protected = frozenset(ids)
        self.host.limiter.set_protected(ids)
        self._redial = {p: v for p, v in self._redial.items() if p in ids}
        self._wake.set()

    async def _keep_links(self) -> None:
        """Dial each protected peer that is neither connected, banned, being dialled, nor backing off."""
        async with trio.open_nursery() as nursery:
            while True:
                now = trio.current_time()
                connected = self._connected_ids()
                for pid in self.protected:
                    if pid in connected:
                        self._redial.pop(pid, None)  # reset on success
                    elif pid not in self._dialing and not self.host.limiter.is_banned(pid):
                        if now >= self._redial.get(pid, (0, 0.0))[1]:
                            self._redial[pid] = (self._redial.get(pid, (0, 0.0))[0], float("inf"))  # in flight
                            nursery.start_soon(self._redial_one, pid)
                await trio.sleep(self.config.keep_interval)

    async def _redial_one(self, pid: str) -> None:
        ok = await self.dial(pid) or self.host.is_connected(pid)
        failures = self._redial.get(pid, (0, 0.0))[0]
        if ok:
            self._redial.pop(pid, None)
            return
        cfg = self.config
        delay = min(cfg.redial_max, cfg.redial_base * 2 ** min(failures, 16)) * random.uniform(0.8, 1.2)
        self._redial[pid] = (failures + 1, trio.current_time() + delay)
        self.metrics.request_errors["dial:protected"] += 1
        log.debug("protected peer %s unreachable; next dial in %.1f s", pid, delay)

    async def _liveness(self) -> None:
        """Ping quiet peers; close a connection whose peer has not answered for `zombie_timeout`."""
        cfg = self.config
        async with trio.open_nursery() as nursery:
            while True:
                now = trio.current_time()
                peers = self.host.peers()
                live = {str(p) for p in peers}
                self._alive = {p: t for p, t in self._alive.items() if p in live}
                for peer in peers:
                    pid = str(peer)
                    quiet = now - self._alive.setdefault(pid, now)
                    if quiet >= cfg.zombie_timeout:
                        del self._alive[pid]
                        self.metrics.disconnects["zombie"] += 1
                        log.info("closing the connection to %s: no answer for %.0f s", pid, quiet)
                        nursery.start_soon(self.host.disconnect, peer)
                    elif quiet >= cfg.ping_interval and pid not in self._pinging:
                        nursery.start_soon(self._ping, peer)
                await trio.sleep(min(cfg.ping_interval, cfg.zombie_timeout) / 2)

    async def _ping(self, peer: ID) -> None:
        pid = str(peer)
        self._pinging.add(pid)
        try:
            await self.host.ping(peer, deadline=self.config.zombie_timeout)
        except P2PError as exc:
            log.debug("ping %s: %s", pid, exc)
        else:
            if pid in self._alive:
                self._alive[pid] = trio.current_time()
        finally:
            self._pinging.discard(pid)

    def _connected_ids(self) -> set[str]:
        return {str(p) for p in self.host.peers()}

    async def _fill(self) -> None:
        """Dial bootstraps that are down, then known peers until the target count."""
        connected = self._connected_ids()
        me = str(self.host.peer_id)
        want = [r.peer_id for r in self.store.candidates(connected | {me}, 1000) if r.peer_id in self.bootstrap_ids]
        room = self.config.target_peers - len(connected)
        if room > 0:
            others = self.store.candidates(connected | {me} | set(want), room)
            want += [r.peer_id for r in others]
        want = [p for p in want if not self.host.limiter.is_banned(p)]
        if not want:
            return
        limiter = trio.CapacityLimiter(self.config.dial_parallel)

        async def one(pid: str) -> None:
            async with limiter:
                await self.dial(pid)

        async with trio.open_nursery() as nursery:
            for pid in want:
                nursery.start_soon(one, pid)

    async def _px_round(self) -> None:
        peers = list(self.host.peers())
        random.shuffle(peers)
        # Bootstraps know the most peers: ask them first.
        peers.sort(key=lambda p: str(p) not in self.bootstrap_ids)
        async with trio.open_nursery() as nursery:
            for peer in peers[: self.config.px_fanout]:
                nursery.start_soon(self.exchange, peer)

    async def _dht_round(self) -> None:
        dht = self.dht
        if dht is None:
            return
        for peer in self.host.peers():
            try:
                await dht.add_peer(peer, skip_server_mode_check=str(peer) in self.bootstrap_ids)
            except Exception as exc:  # a routing-table refusal (full bucket) is not our error
                log.debug("DHT add_peer %s: %r", peer, exc)
        found: list[ID] = []
        with trio.move_on_after(self.config.dht_timeout):
            try:
                found = await dht.peer_routing.find_closest_peers_network(self.host.peer_id.to_bytes())
            except Exception as exc:
                log.debug("DHT lookup failed: %r", exc)
        pstore = self.host.libp2p.get_peerstore()
        me = str(self.host.peer_id)
        for peer in found:
            if str(peer) == me:
                continue
            try:
                known = pstore.addrs(peer)
            except Libp2pPeerStoreError:  # a DHT answer may name peers with no (or only expired) addresses
                continue
            addrs = []
            for a in known:
                text = str(a)
                text = text[: text.index("/p2p/")] if "/p2p/" in text else text
                try:
                    addrs.append(check_addr(text))
                except PeerStoreError:
                    continue
            if addrs:
                self.store.add(str(peer), addrs)

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Maintain connections until cancelled; the peer store is saved on the way out."""
        cfg = self.config
        send, receive = trio.open_memory_channel[tuple[str, ID]](1024)
        notifee = ConnectionEvents(send, self.metrics, "discovery")
        self.host.libp2p.get_network().register_notifee(notifee)
        try:
            async with trio.open_nursery() as nursery:
                if cfg.dht:
                    mode = DHTMode.SERVER if cfg.dht_server else DHTMode.CLIENT
                    self.dht = KadDHT(self.host.libp2p, mode)
                    await nursery.start(self._run_dht, self.dht)
                nursery.start_soon(self._watch, receive)
                nursery.start_soon(self._keep_links)
                nursery.start_soon(self._liveness)
                task_status.started()
                await self._maintain()
        finally:
            self.host.libp2p.get_network().remove_notifee(notifee)
            try:
                self.store.save()
            except OSError as exc:
                log.error("could not save the peer store: %s", exc)

    async def _run_dht(self, dht: KadDHT, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(dht):
            task_status.started()
            await trio.sleep_forever()

    async def _watch(self, receive: trio.MemoryReceiveChannel[tuple[str, ID]]) -> None:
        async for kind, peer in receive:
            self.metrics.peers = len(self.host.peers())
            if kind == "connected":
                self.store.connected(str(peer))
                self._alive[str(peer)] = trio.current_time()  # a new connection starts its quiet clock
            else:
                self._wake.set()  # a peer left: refill now, not at the next tick

    async def _maintain(self) -> None:
        cfg = self.config
        last_px = last_dht = last_save = -1e9
        while True:
            now = trio.current_time()
            with trio.move_on_after(cfg.dial_timeout * 2):
                await self._fill()
            below = len(self.host.peers()) < cfg.target_peers
            px_every = cfg.interval if below or len(self.store) <= len(self.host.peers()) else cfg.px_interval
            if now - last_px >= px_every and self.host.peers():
                last_px = now
                with trio.move_on_after(PX_SPEC.timeout + 1):
                    await self._px_round()
            if self.dht is not None and now - last_dht >= cfg.dht_interval and self.host.peers():
                last_dht = now
                # py-libp2p's DHT is third-party code fed by remote peers: a round that fails is logged and
                # counted, never allowed to end discovery (it once took every bootstrap node down).
                try:
                    with trio.move_on_after(cfg.dht_timeout + 1):
                        await self._dht_round()
                except Exception as exc:  # noqa: BLE001 - see above
                    self.metrics.request_errors["dht:round_failed"] += 1
                    log.warning("DHT round failed: %r", exc)
            if now - last_save >= cfg.save_interval:
                last_save = now
                try:
                    self.store.save()
                except OSError as exc:
                    log.error("could not save the peer store: %s", exc)
            with trio.move_on_after(cfg.interval):
                await self._wake.wait()
            self._wake = trio.Event()
