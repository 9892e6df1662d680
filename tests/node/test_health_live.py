"""/health of a real validator process (issue 13, defect 4): it fails, saying why, when the node has no
chain peers, and recovers when the committee is back. It used to stay ok on a validator left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.testing.procs import NodeProc, stop_all, wait_for
from node.testnet.gen import generate
from node.testnet.local import free_port_base

pytestmark = pytest.mark.slow


def reasons(node: NodeProc) -> list[str] | None:
    body = node.get("/health")
    return body.get("reasons") if isinstance(body, dict) else None


def test_health_says_no_chain_peers_until_the_committee_is_there(tmp_path: Path) -> None:
    base = free_port_base(8)  # p2p at base..base+3, the APIs at base+4..base+7
    plans, _ = generate(tmp_path / "net", hosts=["127.0.0.1"] * 4, chain_id="health-live",
                        p2p_base=base, api_base=base + 4)
    nodes = [NodeProc(p.home, p.api) for p in plans]
    try:
        alone = nodes[0].start()
        wait_for(lambda: "no chain peers" in (reasons(alone) or []), 90, "/health to fail for want of peers",
                 nodes=[alone])
        st = alone.status()
        assert st is not None and st["chain_peers"] == 0 and "last_commit_age_ms" in st and "banned_now" in st
        for n in nodes[1:]:
            n.start()
        wait_for(lambda: min(n.height() for n in nodes) >= 3, 120, "3 commits on every node", nodes=nodes)
        wait_for(lambda: reasons(alone) == [], 60, "/health ok with the committee connected", nodes=nodes)
        for n in nodes[1:]:
            n.stop()
        wait_for(lambda: "no chain peers" in (reasons(alone) or []), 90, "/health to fail once peers are gone",
                 nodes=[alone])
    finally:
        stop_all(nodes)
