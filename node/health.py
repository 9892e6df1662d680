"""What a node knows about its own progress and its peers' claims: the Status it announces, how far peers
claim to be ahead (believed only as far as f+1 agree), what verified blocks prove, /health's reasons and
the Prometheus gauges. Nothing here does I/O; the synchronizer steers by the same claim arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from node.chain import Chain, CommitInfo
from node.metrics import NodeMetrics
from protocol.messages import Status

HEALTH_GRACE_S = 10.0  # a node just started is not judged yet (peers and first commits take seconds)
STALL_TIMEOUTS = 40  # leader timeouts without a commit, while the committee provably advanced, fail /health
SYNC_TOLERANCE_ROUNDS = 10  # proven rounds behind before /health fails
WAVE = 3  # rounds per commit wave: the committee is "ahead" once it signs a wave past our last commit


def own_status(chain: Chain) -> Status:
    """The Status this node announces in the handshake."""
    last = chain.recent[-1] if chain.recent else None
    return Status(
        chain_id=chain.chain_id,
        genesis_hash=chain.genesis_hash,
        height=chain.height,
        head_digest=last.digest if last else bytes(32),
        epoch=chain.epoch,
        highest_round=chain.core.quorum_round,
        validator=chain.is_validator,
    )


def statuses_of(stack: Any) -> dict[Any, Status]:
    """Each chain peer's last Status (none before the stack is up)."""
    hs = getattr(stack, "handshake", None)
    return hs.statuses if hs is not None else {}


def agreed(chain: Chain, claims: list[int]) -> int:
    """The highest value that at least f+1 of the claims reach (all of them if fewer)."""
    f = (chain.committee.size - 1) // 3
    ranked = sorted(claims, reverse=True)
    return ranked[min(f, len(ranked) - 1)]


def rounds_ahead(chain: Chain, st: Status) -> int:
    """Rounds between a peer's claimed (epoch, round) and our threshold clock (a later epoch counts the rest
    of ours, then `epoch_rounds` per epoch)."""
    ours, r = chain.epoch, chain.core.quorum_round
    if st.epoch < ours:
        return 0
    if st.epoch == ours:
        return st.highest_round - r
    per_epoch = chain.genesis.epoch_rounds
    return max(1, per_epoch - r) + (st.epoch - ours - 1) * per_epoch + st.highest_round


def sync_distance(chain: Chain, statuses: dict[Any, Status]) -> int:
    """Rounds peers are ahead of our threshold clock, as far as f+1 peers agree: a claim alone proves
    nothing, so one peer (or f) claiming round 2^64-1 cannot move it. It only steers sync."""
    if not statuses:
        return 0
    return max(0, agreed(chain, [rounds_ahead(chain, s) for s in statuses.values()]))


class Health:
    """/health judged on proof only (peers connected, blocks verified, commits made), never on claims.

    `stack` returns the p2p stack once it is open; `catching_up` says whether the last commit-range sync
    brought blocks (the synchronizer's verdict that we are provably far behind)."""

    def __init__(self, chain: Chain, stack: Callable[[], Any], catching_up: Callable[[], bool]) -> None:
        self.chain = chain
        self._stack = stack
        self._catching_up = catching_up
        self.started = time.monotonic()
        self.last_commit_at = self.started  # monotonic time of our last commit (start-up counts as one)

    def note_commit(self) -> None:
        self.last_commit_at = time.monotonic()

    def chain_peers(self) -> int:
        return len(statuses_of(self._stack()))

    def sync_distance(self) -> int:
        return sync_distance(self.chain, statuses_of(self._stack()))

    def last_commit_age_ms(self) -> int:
        return int((time.monotonic() - self.last_commit_at) * 1000)

    def proven_behind(self) -> int:
        """Rounds between what committee members holding validity stake provably signed (blocks we
        verified, even those still waiting for parents) and our threshold clock."""
        core = self.chain.core
        return max(0, core.proven_round() - core.quorum_round)

    def committee_advanced(self) -> bool:
        """Blocks, not claims, show the committee went on after our last commit: validity stake
        signed a wave past our last committed leader, or next-epoch blocks signed by known keys."""
        chain = self.chain
        last = chain.recent[-1] if chain.recent else None
        committed = last.leader.round if last is not None and last.index >= chain.state.epoch_start else 0
        return chain.core.proven_round() > committed + WAVE or chain.early.vouched > 0

    def reasons(self) -> list[str]:
        """Why this node is unhealthy; empty when healthy (or in its first HEALTH_GRACE_S seconds)."""
        if time.monotonic() - self.started < HEALTH_GRACE_S:
            return []
        reasons = []
        if self.chain_peers() == 0:
            reasons.append("no chain peers")
        behind = self.proven_behind()
        if behind > SYNC_TOLERANCE_ROUNDS:
            reasons.append(f"behind: committee blocks {behind} rounds past ours")
        if self._catching_up():
            reasons.append("far behind: catching up by commit ranges")
        age = self.last_commit_age_ms()
        if age > STALL_TIMEOUTS * self.chain.params.leader_timeout_ms and self.committee_advanced():
            reasons.append(f"no commit for {age} ms while the committee went on")
        return reasons


def count_commit(metrics: NodeMetrics, c: CommitInfo) -> None:
    """A commit's transactions and latency into the metrics."""
    # a copy of an executed transaction (each validator may carry it in its own block) is no failure
    metrics.txs.labels("ok").inc(c.ok_txs)
    metrics.txs.labels("duplicate").inc(c.dup_txs)
    metrics.txs.labels("failed").inc(c.txs - c.ok_txs - c.dup_txs)
    if c.latency_ms is not None:
        metrics.commit_latency.observe(c.latency_ms / 1000)


def refresh_metrics(metrics: NodeMetrics, chain: Chain, stack: Any) -> None:
    """Set the gauges from the chain, the mempool and (once it is up) the p2p stack."""
    m = metrics
    m.height.set(chain.height)
    m.round.set(chain.core.quorum_round)
    m.peers.set(len(statuses_of(stack)))
    m.mempool.set(len(chain.mempool))
    m.tx_duplicate_ratio.set(chain.stats.duplicate_rate)
    pool = chain.mempool.stats()
    m.mempool_bytes.set(pool["bytes"])
    m.mempool_evicted.set(pool["evicted"])
    for rule, n in pool["refused"].items():
        m.mempool_refused.labels(rule).set(n)
    if stack is not None:  # every key is a protocol id or reason of ours, so the label set stays small
        p2p, limiter = stack.metrics, stack.host.limiter
        families = {
            "charges": p2p.charges, "request_errors": p2p.request_errors, "rejects": p2p.rejects,
            "drops": p2p.drops, "disconnects": p2p.disconnects, "penalties": limiter.violations,
            "limit_rejects": limiter.rejects,
            "bans": {"issued": limiter.bans, "now": len(limiter.banned_peers())},
        }
        for family, counts in families.items():
            for key, n in counts.items():
                m.p2p.labels(family, key).set(n)
