"""Pending transactions: bounded by count and bytes (per sender and in total), ordered by fee per byte.

spec/state.md §3.3 is normative. Admission (`add`) is given the fee the transaction will burn, the
signer's committed next nonce and balance (Chain.submit_tx reads them from the state):

- a nonce at most `max_nonce_gap - 1` above the committed next nonce;
- the balance covers this fee plus the fees of every other pending transaction of the sender;
- a fee-free transaction (fee 0: weights, axons, evidence) only at the next nonce or right after a
  pending transaction of the sender, so keys that hold nothing cannot park anything;
- the same (sender, nonce) is replaced only by a tip at least `replace_bump_pct` percent higher;
- when a cap is reached the lowest fee per byte (latest arrival first) is evicted, together with the
  sender's later nonces that depend on it; a newcomer that would itself be the lowest is refused.

`take` fills a block up to a byte budget: the best fee per byte first (then arrival), each sender's
transactions in nonce order from its committed next nonce, never past a gap. A transaction handed to a
block stays "in flight"; if no commit includes it within `requeue_after` rounds it is offered again.

One proposer per transaction (spec/state.md §3.3): every validator holds every transaction (fee checks, relay,
fallback), but `take` given the proposer's place offers a sender's transactions only to its owner
(`tx_owner`: the signer's hash over the committee order) until they have waited `fallback_after` rounds here;
then one more validator in committee order every `fallback_after` rounds, so a crashed owner delays a
transaction and never loses it. A local choice, not a consensus rule: a copy that still lands twice is a
harmless duplicate.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocol import crypto
from protocol.consensus.block_verifier import MAX_BLOCK_TX_BYTES
from protocol.errors import ProtocolError
from protocol.state.state import fee_text

RATE_SHIFT = 20  # fee-per-byte keys are fee * 2^20 // size: exact enough to order, cheap to compare
# rounds a transaction waits here before the next validator after its owner may propose it too: commits come
# 3-5 rounds after a proposal (more under load), so an owner that is up almost never races its fallback
FALLBACK_ROUNDS = 10


def owner_hash(signer: bytes) -> int:
    """The signer's place on the committee ring (`tx_owner`), computed once per admission."""
    return int.from_bytes(crypto.digest(signer)[:8], "big")


def tx_owner(signer: bytes, size: int) -> int:
    """The committee index that proposes the signer's transactions: by signer, not by transaction, so a
    sender's nonces go into one proposer's blocks in order (split over two blocks of one commit they could
    be linearised out of order and fail); a hash, so a key says nothing about where it lands."""
    return owner_hash(signer) % size


def may_propose(owner: int, own_index: int, size: int, waited: int, fallback_after: int = FALLBACK_ROUNDS) -> bool:
    """Whether validator `own_index` may propose a transaction of `owner`'s after it waited `waited` rounds:
    the owner at once, then one more validator in committee order every `fallback_after` rounds."""
    return (own_index - owner) % size <= max(0, waited) // fallback_after


class MempoolError(ProtocolError):
    """A transaction the mempool will not hold; `rule` names the reason (as TxRejected does)."""

    rule = "mempool"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.rule}: {message}")


class MempoolFull(MempoolError):
    rule = "mempool full"


class SenderQuotaExceeded(MempoolError):
    rule = "sender quota"


class DuplicateTx(MempoolError):
    rule = "duplicate"


class NonceGap(MempoolError):
    rule = "nonce gap"


class FeesNotCovered(MempoolError):
    rule = "fee"


class Underpriced(MempoolError):
    rule = "replacement underpriced"


@dataclass(slots=True)
class _Entry:
    digest: bytes
    data: bytes
    sender: bytes
    nonce: int
    fee: int
    tip: int
    seq: int  # arrival order
    rate: int  # fee per byte in 1/2^20 units: an int key compares ~10x faster than a Fraction
    since: int = 0  # round at admission: how long it has waited decides who may propose it
    ring: int = 0  # owner_hash(sender): its owner is ring % committee size
    inflight_round: int | None = None
    tx: Any = None  # the decoded SignedTransaction admission checked: execution reuses it (no second decode)


class Mempool:
    def __init__(
        self,
        max_txs: int = 10_000,
        max_bytes: int = 32 << 20,
        max_per_sender: int = 64,
        max_sender_bytes: int = 256 << 10,
        max_nonce_gap: int = 16,
        replace_bump_pct: int = 10,
        requeue_after: int = 20,
        fallback_after: int = FALLBACK_ROUNDS,
    ) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self.max_sender_bytes = max_sender_bytes
        self.max_nonce_gap = max_nonce_gap
        self.replace_bump_pct = replace_bump_pct
        self.requeue_after = requeue_after
        self.fallback_after = fallback_after
        self._entries: dict[bytes, _Entry] = {}
        self._by_sender: dict[bytes, dict[int, _Entry]] = {}  # sender -> nonce -> entry
        self._sender_bytes: dict[bytes, int] = {}
        self._chain_nonce: dict[bytes, int] = {}  # committed next nonce, as last seen, per pending sender
        self._lowest: list[tuple[int, int, bytes]] = []  # (rate, -seq, digest): eviction heap, lazy
        self._seq = itertools.count()
        self._bytes = 0
        self.rejected: dict[str, int] = {}  # refusals by rule
        self.evicted = 0
        self.replaced = 0
        self.admitted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._entries

    def checked(self, digests: Iterable[bytes]) -> dict[bytes, Any]:
        """The pending ones among `digests`, each with its decoded form (None if `add` was given none): every
        pending transaction passed admission, signature included, so a commit need not verify them again."""
        entries = self._entries
        return {d: entries[d].tx for d in digests if d in entries}

    def has_runnable(self) -> bool:
        """Does a pending transaction sit at its sender's next nonce (it could apply now, whoever proposes it)?"""
        return any(self._chain_nonce.get(sender, min(mine)) in mine for sender, mine in self._by_sender.items())

    def owned(self, digests: Iterable[bytes]) -> list[tuple[int, bytes]]:
        """(owner hash, raw bytes) of the pending ones among `digests`: what `push_to_owners` sends where."""
        entries = self._entries
        return [(entries[d].ring, entries[d].data) for d in digests if d in entries]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def stats(self) -> dict[str, int | dict[str, int]]:
        """The mempool's figures for /status and /metrics."""
        return {
            "txs": len(self._entries),
            "bytes": self._bytes,
            "senders": len(self._by_sender),
            "max_txs": self.max_txs,
            "max_bytes": self.max_bytes,
            "admitted": self.admitted,
            "replaced": self.replaced,
            "evicted": self.evicted,
            "refused": dict(sorted(self.rejected.items())),
        }

    def _refuse(self, exc: MempoolError) -> MempoolError:
        self.count_refusal(exc.rule)
        return exc

    def count_refusal(self, rule: str) -> None:
        """Count a refusal by rule: the mempool's own, and the state's admission checks (fee, nonce, signature)."""
        self.rejected[rule] = self.rejected.get(rule, 0) + 1

    # --- admission ------------------------------------------------------------------------------

    def add(
        self, digest: bytes, data: bytes, sender: bytes, nonce: int, *, fee: int = 0, tip: int = 0,
        next_nonce: int | None = None, balance: int = 0, round_: int = 0, tx: Any = None,
    ) -> list[bytes]:
        """Admit a checked transaction, or raise a MempoolError; returns the digests it displaced
        (a replaced transaction and evictions). `next_nonce` is the sender's committed next nonce
        (None: `nonce` itself, for callers that checked it); `round_` is the DAG round now; `tx` its decoded
        form, if the caller wants it back from `checked`."""
        if digest in self._entries:
            raise self._refuse(DuplicateTx(f"transaction {digest.hex()[:16]} is already pending"))
        base = nonce if next_nonce is None else next_nonce
        self._chain_nonce[sender] = base
        mine = self._by_sender.get(sender, {})
        if nonce >= base + self.max_nonce_gap:
            raise self._refuse(NonceGap(
                f"nonce {nonce} is {nonce - base} ahead of the next nonce {base}; at most {self.max_nonce_gap - 1} "
                "ahead are held"))
        if fee == 0 and nonce != base and nonce - 1 not in mine:
            raise self._refuse(NonceGap(
                f"a fee-free transaction is held only at the next nonce {base} or right after a pending one "
                f"(nonce {nonce})"))
        old = mine.get(nonce)
        if old is not None:
            need = max(old.tip + 1, -(-old.tip * (100 + self.replace_bump_pct) // 100))
            if tip < need:
                raise self._refuse(Underpriced(
                    f"nonce {nonce} is pending with tip {old.tip}; a replacement needs a tip of at least {need}"))
        pending_fees = sum(e.fee for n, e in mine.items() if n != nonce)
        if pending_fees + fee > balance:
            raise self._refuse(FeesNotCovered(
                f"{fee_text(fee, balance)}, and {pending_fees} units of fees are pending from this sender "
                f"(short by {pending_fees + fee - balance} units)"))
        size = len(data)
        count = len(mine) - (old is not None)
        sender_bytes = self._sender_bytes.get(sender, 0) - (len(old.data) if old else 0)
        if count >= self.max_per_sender or sender_bytes + size > self.max_sender_bytes:
            raise self._refuse(SenderQuotaExceeded(
                f"sender has {count} pending transactions / {sender_bytes} bytes (caps {self.max_per_sender} / "
                f"{self.max_sender_bytes})"))
        if size > self.max_bytes:
            raise self._refuse(MempoolFull(f"a {size}-byte transaction exceeds the whole mempool"))
        rate = (fee << RATE_SHIFT) // max(size, 1)
        displaced = [old.digest] if old is not None else []
        if old is not None:
            self._drop(old)
            self.replaced += 1
        displaced += self._make_room(size, rate, sender)
        entry = _Entry(digest, data, sender, nonce, fee, tip, next(self._seq), rate, round_, owner_hash(sender), tx=tx)
        self._entries[digest] = entry
        self._by_sender.setdefault(sender, {})[nonce] = entry
        self._sender_bytes[sender] = self._sender_bytes.get(sender, 0) + size
        self._bytes += size
        heapq.heappush(self._lowest, (rate, -entry.seq, digest))
        self.admitted += 1
        return displaced

    def _make_room(self, size: int, rate: int, sender: bytes) -> list[bytes]:
        """Evict the lowest fee per byte until `size` more bytes and one more transaction fit."""
        out: list[bytes] = []
        while len(self._entries) >= self.max_txs or self._bytes + size > self.max_bytes:
            low = self._peek_lowest()
            assert low is not None
            if low.rate >= rate:
                raise self._refuse(MempoolFull(
                    f"mempool full ({len(self._entries)} transactions, {self._bytes} bytes) and the lowest pending "
                    f"fee per byte is {low.rate / (1 << RATE_SHIFT):.1f} units; pay more than that (tip) or retry "
                    "later"))
            for e in sorted(self._by_sender[low.sender].values(), key=lambda e: e.nonce):
                if e.nonce >= low.nonce:  # its later nonces cannot apply without it
                    self._drop(e)
                    out.append(e.digest)
                    self.evicted += 1
        return out

    def _peek_lowest(self) -> _Entry | None:
        while self._lowest:
            _, _, digest = self._lowest[0]
            e = self._entries.get(digest)
            if e is not None:
                return e
            heapq.heappop(self._lowest)
        return None

    def _drop(self, e: _Entry) -> None:
        del self._entries[e.digest]
        self._bytes -= len(e.data)
        mine = self._by_sender[e.sender]
        del mine[e.nonce]
        self._sender_bytes[e.sender] -= len(e.data)
        if not mine:
            del self._by_sender[e.sender]
            del self._sender_bytes[e.sender]
            self._chain_nonce.pop(e.sender, None)
        if len(self._lowest) > 2 * len(self._entries) + 64:  # lazy deletions: rebuild now and then
            self._lowest = [(x.rate, -x.seq, x.digest) for x in self._entries.values()]
            heapq.heapify(self._lowest)

    # --- blocks ---------------------------------------------------------------------------------

    def take(
        self, round_: int, max_count: int = 1000, max_bytes: int = MAX_BLOCK_TX_BYTES,
        proposer: tuple[int, int] = (0, 1),
    ) -> list[bytes]:
        """Transactions for a new block: best fee per byte first, then arrival; per sender in nonce order
        from its committed next nonce (in-flight ones skipped, never past a gap). `proposer` (our committee
        index, committee size; by default a committee of one) leaves out what is not ours to propose yet."""
        runs: dict[bytes, list[_Entry]] = {}
        heads: list[tuple[int, int, bytes]] = []
        own, size = proposer
        for sender, mine in self._by_sender.items():
            run = []
            n = self._chain_nonce.get(sender, min(mine))
            owner = next(iter(mine.values())).ring % size
            while n in mine:
                if not may_propose(owner, own, size, round_ - mine[n].since, self.fallback_after):
                    break  # its later nonces cannot apply before it: they wait for its proposer too
                if self._offerable(mine[n], round_):
                    run.append(mine[n])
                n += 1
            if run:
                run.reverse()  # pop() from the end gives the lowest nonce
                runs[sender] = run
                heads.append((-run[-1].rate, run[-1].seq, sender))
        heapq.heapify(heads)
        out: list[bytes] = []
        used = 0
        while heads and len(out) < max_count:
            _, _, sender = heapq.heappop(heads)
            run = runs[sender]
            e = run.pop()
            if used + len(e.data) > max_bytes:
                continue  # this sender's later nonces wait too; smaller ones of others may still fit
            e.inflight_round = round_
            out.append(e.data)
            used += len(e.data)
            if run:
                heapq.heappush(heads, (-run[-1].rate, run[-1].seq, sender))
        return out

    def _offerable(self, e: _Entry, round_: int) -> bool:
        return e.inflight_round is None or round_ - e.inflight_round >= self.requeue_after

    def requeue_all(self) -> None:
        """Offer every transaction again: at an epoch change the old epoch's uncommitted blocks are
        dropped, and round numbers start again from 1 (waiting is counted from there)."""
        for e in self._entries.values():
            e.inflight_round = None
            e.since = 0

    def remove(self, digests: list[bytes] | set[bytes]) -> None:
        """Drop committed (or now invalid) transactions, and the sender's nonces they made stale."""
        for d in digests:
            e = self._entries.get(d)
            if e is None:
                continue
            self._drop(e)
            mine = self._by_sender.get(e.sender)
            if mine is None:
                continue
            nxt = max(self._chain_nonce.get(e.sender, 0), e.nonce + 1)
            self._chain_nonce[e.sender] = nxt
            for stale in [x for n, x in mine.items() if n < nxt]:
                self._drop(stale)

    def next_nonce(self, sender: bytes) -> int:
        """One past the sender's highest pending nonce (0 when none is pending)."""
        mine = self._by_sender.get(sender)
        return max(mine) + 1 if mine else 0

    def pending(self) -> list[tuple[bytes, bytes]]:
        """(digest, data) of every pending transaction, for re-checks after a state change."""
        return [(e.digest, e.data) for e in self._entries.values()]
