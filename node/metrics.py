"""The node's Prometheus series (served at GET /metrics by node/api/routes_health.py).

Its own module because the daemon (which records commits, rejects and p2p counters) and the API (which
counts refusals and 500s, and renders the registry) both write to it, and neither should import the other.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    """Prometheus series of one node, in its own registry (several nodes may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("tensornet_height", "Last committed height", registry=r)
        self.round = Gauge("tensornet_round", "Threshold-clock round of the DAG", registry=r)
        self.peers = Gauge("tensornet_peers", "Chain peers that passed the handshake", registry=r)
        self.mempool = Gauge("tensornet_mempool_txs", "Pending transactions", registry=r)
        self.mempool_bytes = Gauge("tensornet_mempool_bytes", "Bytes of pending transactions", registry=r)
        self.mempool_evicted = Gauge(
            "tensornet_mempool_evicted", "Transactions evicted for a higher fee per byte since start", registry=r
        )
        self.mempool_refused = Gauge(
            "tensornet_mempool_refused", "Transactions the mempool refused since start, by rule", ["rule"], registry=r
        )
        self.commit_latency = Histogram(
            "tensornet_commit_latency_seconds",
            "Leader block creation to local commit",
            buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.rejects = Counter("tensornet_rejects_total", "Rejected inputs by reason", ["reason"], registry=r)
        self.p2p = Gauge(
            "tensornet_p2p_events", "p2p counters since start: family (charges, penalties, rejects, request_errors, "
            "drops, disconnects, bans) and key (protocol:reason or reason); what peers cost us and were charged",
            ["family", "key"], registry=r,
        )
        self.txs = Counter(
            "tensornet_txs_total", "Committed transactions by outcome: ok, failed, or duplicate (a copy of one "
            "already executed, as when several validators carry it)", ["outcome"], registry=r,
        )
        self.tx_duplicate_ratio = Gauge(
            "tensornet_committed_tx_duplicate_ratio", "Duplicates over transaction copies in committed blocks since "
            "start (the duplicate and all outcomes of tensornet_txs_total); each transaction has one proposer, so "
            "under 0.05 in normal operation", registry=r,
        )
        self.api_refused = Counter(
            "tensornet_api_refused_total", "API requests refused before a handler ran, by reason", ["reason"],
            registry=r,
        )
        self.api_errors = Counter(
            "tensornet_api_errors_total", "API handler failures (500s; logged at most once per route per "
            "interval)", ["route"], registry=r,
        )
