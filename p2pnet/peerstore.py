"""The persistent address book: peers we have seen, their addresses, and when to dial them next.

A node restarted from disk should rejoin without its bootstrap node, so known peers live in
`<home>/peers.json`, written atomically (temp file, fsync, rename): a crash mid-write leaves the old
file, never a torn one. A corrupt or hand-edited file is reported and set aside, not fatal: the
bootstrap addresses still work. Failed dials back off exponentially (with jitter) up to a ceiling.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import multiaddr
from libp2p.peer.id import ID

from p2pnet.errors import P2PError

log = logging.getLogger("p2pnet.peerstore")

FILE_NAME = "peers.json"
VERSION = 1
MAX_ADDRS = 8
MAX_ADDR_LEN = 256
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
# Bootstraps are how a node with no peers gets back in: retried at most this far apart, so it
# reconnects within seconds of them coming back (see spec/p2p.md, "Committee connectivity").
BOOTSTRAP_BACKOFF_MAX = 15.0


class PeerStoreError(P2PError):
    """A peer record or address that is not acceptable."""


@dataclass
class PeerRecord:
    peer_id: str
    addrs: list[str] = field(default_factory=list)  # without the /p2p/ suffix
    last_seen: float = 0.0  # wall clock of the last successful connection
    failures: int = 0  # consecutive failed dials
    next_dial: float = 0.0  # wall clock before which we do not dial again
    bootstrap: bool = False

    def dial_addrs(self) -> list[str]:
        return [f"{a}/p2p/{self.peer_id}" for a in self.addrs]


def split_p2p_addr(text: str) -> tuple[str, str]:
    """('/ip4/1.2.3.4/tcp/5', peer id) from a full multiaddr; a typed error for anything else."""
    if not isinstance(text, str) or len(text) > MAX_ADDR_LEN + 64:
        raise PeerStoreError(f"not a multiaddr string: {text!r:.80}")
    try:
        maddr = multiaddr.Multiaddr(text)
        peer = maddr.get_peer_id()
    except Exception as exc:
        raise PeerStoreError(f"bad multiaddr {text!r}: {exc}") from exc
    if not peer:
        raise PeerStoreError(f"multiaddr {text!r} has no /p2p/<peer id>")
    base = text[: text.rindex("/p2p/")]
    check_addr(base)
    return base, check_peer_id(peer)


def check_peer_id(text: str) -> str:
    """A base58 peer ID that is a well-formed multihash (identity or sha2-256), else PeerStoreError."""
    try:
        raw = ID.from_base58(text).to_bytes()
    except Exception as exc:
        raise PeerStoreError(f"not a peer id: {text!r:.80}") from exc
    identity = len(raw) >= 2 and raw[0] == 0x00 and raw[1] == len(raw) - 2 and len(raw) <= 44
    sha256 = len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20
    if not (identity or sha256):
        raise PeerStoreError(f"not a peer id (bad multihash): {text!r:.80}")
    return text


def check_addr(text: str) -> str:
    """A dialable transport address (TCP over IPv4/IPv6/DNS), without /p2p/."""
    if not isinstance(text, str) or not text or len(text) > MAX_ADDR_LEN:
        raise PeerStoreError(f"not an address: {text!r:.80}")
    try:
        maddr = multiaddr.Multiaddr(text)
        protos = [p.name for p in maddr.protocols()]
    except Exception as exc:
        raise PeerStoreError(f"bad multiaddr {text!r}: {exc}") from exc
    if len(protos) != 2 or protos[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") or protos[1] != "tcp":
        raise PeerStoreError(f"address {text!r} is not <ip>/tcp/<port>")
    return text


class PeerStore:
    """Known peers, persisted as JSON at `path` (None: in memory only). At most `max_peers` kept."""

    def __init__(self, path: Path | str | None, max_peers: int = 1000, clock=time.time) -> None:
        self.path = Path(path) if path is not None else None
        self.max_peers = max_peers
        self.clock = clock
        self.peers: dict[str, PeerRecord] = {}
        self.dirty = False
        if self.path is not None:
            self.load()

    # --- persistence --------------------------------------------------------------------------

    def load(self) -> None:
        assert self.path is not None
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("peers"), list):
                raise ValueError(f"expected {{'version': {VERSION}, 'peers': [...]}}")
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            log.error("peer store %s is unreadable (%s); moved to %s, starting empty", self.path, exc, aside)
            return
        for item in doc["peers"][: self.max_peers]:
            try:
                rec = PeerRecord(
                    peer_id=check_peer_id(item["peer_id"]),
                    addrs=[check_addr(a) for a in item.get("addrs", [])][:MAX_ADDRS],
                    last_seen=float(item.get("last_seen", 0.0)),
                    bootstrap=bool(item.get("bootstrap", False)),
                )
            except (PeerStoreError, KeyError, TypeError, ValueError) as exc:
                log.warning("skipping bad peer record in %s: %s", self.path, exc)
                continue
            self.peers[rec.peer_id] = rec

    def save(self) -> None:
        """Write atomically; a no-op when nothing changed."""
        if self.path is None or not self.dirty:
            return
        doc = {"version": VERSION, "peers": [asdict(r) for r in self.peers.values()]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.dirty = False

    # --- records ------------------------------------------------------------------------------

    def add(self, peer_id: str, addrs: list[str], *, bootstrap: bool = False) -> PeerRecord:
        """Merge `addrs` into `peer_id`'s record (newest first); bad addresses raise PeerStoreError."""
        peer_id = check_peer_id(peer_id)
        clean = [check_addr(a) for a in addrs]
        rec = self.peers.get(peer_id)
        if rec is None:
            if len(self.peers) >= self.max_peers:
                self._evict()
            rec = self.peers[peer_id] = PeerRecord(peer_id)
        merged = clean + [a for a in rec.addrs if a not in clean]
        if merged[:MAX_ADDRS] != rec.addrs or (bootstrap and not rec.bootstrap):
            rec.addrs = merged[:MAX_ADDRS]
            rec.bootstrap = rec.bootstrap or bootstrap
            self.dirty = True
        return rec

    def _evict(self) -> None:
        victims = [r for r in self.peers.values() if not r.bootstrap]
        if victims:
            worst = min(victims, key=lambda r: (r.last_seen, -r.failures))
            del self.peers[worst.peer_id]

    def remove(self, peer_id: str) -> None:
        if self.peers.pop(peer_id, None) is not None:
            self.dirty = True

    def connected(self, peer_id: str) -> None:
        rec = self.peers.get(peer_id)
        if rec is not None:
            rec.failures = 0
            rec.next_dial = 0.0
            rec.last_seen = self.clock()
            self.dirty = True

    def failed(self, peer_id: str) -> float:
        """Record a failed dial; returns the backoff in seconds before the next try."""
        rec = self.peers.get(peer_id)
        if rec is None:
            return 0.0
        rec.failures += 1
        ceiling = BOOTSTRAP_BACKOFF_MAX if rec.bootstrap else BACKOFF_MAX
        delay = min(ceiling, BACKOFF_BASE * 2 ** min(rec.failures - 1, 10))
        delay *= random.uniform(0.8, 1.2)
        rec.next_dial = self.clock() + delay
        return delay

    def candidates(self, exclude: set[str], limit: int) -> list[PeerRecord]:
        """Peers to dial now: due, not excluded, with addresses; recently seen first."""
        now = self.clock()
        due = [r for r in self.peers.values() if r.addrs and r.peer_id not in exclude and r.next_dial <= now]
        due.sort(key=lambda r: (r.failures, -r.last_seen))
        return due[:limit]

    def __len__(self) -> int:
        return len(self.peers)

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self.peers
