"""Pending transactions: bounded, fair across senders, each transaction proposed until committed.

Fairness: `take` serves senders round-robin (each sender's transactions in nonce order), so one
busy sender cannot starve the rest, and a per-sender cap bounds what one key can park here.
A transaction handed to a block stays "in flight"; if no commit includes it within
`requeue_after` rounds (our block was never committed) it is offered again. Duplicates across
blocks are harmless: the state machine executes a transaction once, the first time in commit order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from protocol.errors import ProtocolError


class MempoolError(ProtocolError):
    """A transaction the mempool will not hold."""


class MempoolFull(MempoolError):
    pass


class SenderQuotaExceeded(MempoolError):
    pass


class DuplicateTx(MempoolError):
    pass


@dataclass
class _Entry:
    digest: bytes
    data: bytes
    sender: bytes
    nonce: int
    inflight_round: int | None = None


class Mempool:
    def __init__(
        self, max_txs: int = 50_000, max_per_sender: int = 1_000, max_bytes: int = 64 << 20, requeue_after: int = 20
    ) -> None:
        self.max_txs = max_txs
        self.max_per_sender = max_per_sender
        self.max_bytes = max_bytes
        self.requeue_after = requeue_after
        self._entries: dict[bytes, _Entry] = {}
        self._by_sender: OrderedDict[bytes, dict[bytes, _Entry]] = OrderedDict()
        self._bytes = 0
        self.rejected: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _reject(self, exc: MempoolError) -> MempoolError:
        name = type(exc).__name__
        self.rejected[name] = self.rejected.get(name, 0) + 1
        return exc

    def add(self, digest: bytes, data: bytes, sender: bytes, nonce: int) -> None:
        if digest in self._entries:
            raise self._reject(DuplicateTx(f"transaction {digest.hex()[:16]} is already pending"))
        if len(self._entries) >= self.max_txs or self._bytes + len(data) > self.max_bytes:
            raise self._reject(MempoolFull(f"mempool full ({len(self._entries)} transactions); retry later"))
        mine = self._by_sender.get(sender)
        if mine is not None and len(mine) >= self.max_per_sender:
            raise self._reject(
                SenderQuotaExceeded(f"sender already has {len(mine)} pending transactions (cap {self.max_per_sender})")
            )
        entry = _Entry(digest, data, sender, nonce)
        self._entries[digest] = entry
        self._by_sender.setdefault(sender, {})[digest] = entry
        self._bytes += len(data)

    def take(self, round_: int, max_count: int = 1000, max_bytes: int = 2 << 20) -> list[bytes]:
        """Transactions for a new block: round-robin over senders, nonce order within a sender."""
        queues = []
        for entries in self._by_sender.values():
            ready = [e for e in entries.values() if self._offerable(e, round_)]
            ready.sort(key=lambda e: (e.nonce, e.digest))
            if ready:
                queues.append(ready)
        out: list[bytes] = []
        used = 0
        depth = 0
        while len(out) < max_count and queues:
            next_queues = []
            for q in queues:
                if depth < len(q):
                    e = q[depth]
                    if len(out) >= max_count or used + len(e.data) > max_bytes:
                        return out
                    e.inflight_round = round_
                    out.append(e.data)
                    used += len(e.data)
                    if depth + 1 < len(q):
                        next_queues.append(q)
            queues = next_queues
            depth += 1
        # rotate so the next block starts with other senders
        if self._by_sender:
            self._by_sender.move_to_end(next(iter(self._by_sender)))
        return out

    def _offerable(self, e: _Entry, round_: int) -> bool:
        return e.inflight_round is None or round_ - e.inflight_round >= self.requeue_after

    def requeue_all(self) -> None:
        """Offer every transaction again: at an epoch change the old epoch's uncommitted blocks are
        dropped, and round numbers start again from 1."""
        for entries in self._by_sender.values():
            for e in entries.values():
                e.inflight_round = None

    def remove(self, digests: list[bytes] | set[bytes]) -> None:
        """Drop committed (or now invalid) transactions."""
        for d in digests:
            e = self._entries.pop(d, None)
            if e is None:
                continue
            self._bytes -= len(e.data)
            mine = self._by_sender.get(e.sender)
            if mine is not None:
                mine.pop(d, None)
                if not mine:
                    del self._by_sender[e.sender]

    def next_nonce(self, sender: bytes) -> int:
        mine = self._by_sender.get(sender)
        return max((e.nonce for e in mine.values()), default=-1) + 1 if mine else 0

    def pending(self) -> list[tuple[bytes, bytes]]:
        """(digest, data) of every pending transaction, for re-checks after a state change."""
        return [(e.digest, e.data) for e in self._entries.values()]
