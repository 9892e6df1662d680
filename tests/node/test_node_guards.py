"""The daemon's defences against peers (issue 13): bad requests refused and charged, claims of height or
round never trusted on one peer's word, and /health judged on proof (peers, verified blocks, commits)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from starlette.testclient import TestClient

from node.api.app import build_app
from node.chain import Chain
from node.config import load_config
from node.daemon import Node
from node.health import HEALTH_GRACE_S, STALL_TIMEOUTS
from node.sync import FAR_BEHIND
from node.testnet.gen import account, generate
from p2pnet.gossip import Verdict
from p2pnet.limits import INVALID_SIGNATURE, PeerLimiter
from p2pnet.metrics import Metrics
from p2pnet.reqresp import Refused
from protocol.crypto import Keypair
from protocol.messages import (
    Block,
    FetchBlocks,
    FetchCommits,
    FetchOwnLast,
    SignedBlock,
    SignedTransaction,
    Status,
    Transaction,
    Transfer,
)
from protocol.state.genesis import load_genesis
from tests.node.test_chain import FakeClock, step

U64_MAX = (1 << 64) - 1
CHAIN = "guards-chain"


@pytest.fixture
def net(tmp_path: Path) -> tuple[list[Any], Path]:
    return generate(tmp_path / "net", hosts=["127.0.0.1"] * 4, chain_id=CHAIN)


@pytest.fixture
def node(net: tuple[list[Any], Path]) -> Node:
    plans, _ = net
    n = Node(plans[0].home, load_config(plans[0].home))
    n.stack = SimpleNamespace(
        handshake=SimpleNamespace(statuses={}), host=SimpleNamespace(limiter=PeerLimiter()), metrics=Metrics()
    )
    yield n
    n.close()


def claims(node: Node, **heights_rounds: tuple[int, int]) -> None:
    """Peers' Status claims, as the handshake would hold them: name -> (height, round)."""
    g = node.chain
    node.stack.handshake.statuses = {
        name: Status(g.chain_id, g.genesis_hash, h, bytes(32), g.epoch, r, True)
        for name, (h, r) in heights_rounds.items()
    }


def refusal(coro: Any) -> Refused:
    async def run() -> Refused:
        with pytest.raises(Refused) as info:
            await coro
        return info.value

    return trio.run(run)


# --- request validation (defect 5) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "req",
    [
        FetchBlocks(0, (), 0, U64_MAX),
        FetchBlocks(0, (), 9, 2),
        FetchBlocks(0, (), U64_MAX, U64_MAX),
    ],
)
def test_bad_block_ranges_are_refused_and_charged(node: Node, req: FetchBlocks) -> None:
    exc = refusal(node.service.serve_blocks("peer", req.to_bytes()))
    assert exc.penalty == "bad_request"


@pytest.mark.parametrize("req", [FetchCommits(0, U64_MAX), FetchCommits(U64_MAX, U64_MAX), FetchCommits(9, 2)])
def test_bad_commit_ranges_are_refused_and_charged(node: Node, req: FetchCommits) -> None:
    exc = refusal(node.service.serve_commits("peer", req.to_bytes()))
    assert exc.penalty == "bad_request"


def test_a_later_epoch_is_refused_without_charge(node: Node) -> None:
    """An honest peer a whole epoch ahead may ask for its epoch's blocks: nothing here, no fault."""
    for coro in (
        node.service.serve_blocks("peer", FetchBlocks(U64_MAX, (), 1, 2).to_bytes()),
        node.service.serve_own_last("peer", FetchOwnLast(U64_MAX, 0).to_bytes()),
    ):
        assert refusal(coro).penalty is None
    assert refusal(node.service.serve_own_last("peer", b"\xa1\x61x\x00")).penalty == "bad_request"


def test_good_requests_are_still_served(node: Node) -> None:
    from protocol.messages import BlocksResponse, CommitsResponse

    blocks = trio.run(node.service.serve_blocks, "peer", FetchBlocks(0, (), 1, 9).to_bytes())
    commits = trio.run(node.service.serve_commits, "peer", FetchCommits(1, 40).to_bytes())
    assert BlocksResponse.from_bytes(blocks).blocks == ()
    assert CommitsResponse.from_bytes(commits).commits == ()


def test_an_invalid_pushed_block_is_refused_with_the_invalid_block_penalty(node: Node) -> None:
    exc = refusal(node.service.serve_push("peer", b"\xa1\x61x\x00"))
    assert exc.penalty == "invalid_block"


def test_a_pushed_block_with_a_forged_signature_is_proof_of_fault(node: Node) -> None:
    """A committee author's block signed by another key: the sender is charged `invalid_signature`, a
    proof of fault that bans even a committee member for the full ban (not the short cool-off)."""
    g = node.chain
    block = Block(g.chain_id, g.epoch, 1, 1, 1_000_000, (), (), ())
    data = SignedBlock.create(block, Keypair(b"\x77" * 32)).to_bytes()
    limiter = node.stack.host.limiter
    limiter.set_protected(["mallory"])
    exc = refusal(node.service.serve_push("mallory", data))
    assert exc.penalty == "invalid_block"
    assert limiter.violations[INVALID_SIGNATURE] == 1
    assert limiter.is_banned("mallory")
    assert limiter.ban_expiry("mallory") - limiter.clock() > limiter.limits.protected_ban_seconds


# --- claims are not proof (defect 4) -------------------------------------------------------------------


def test_one_peer_claiming_round_2_64_does_not_fail_health_or_steer_sync(node: Node) -> None:
    node.health.started -= HEALTH_GRACE_S + 1
    claims(node, a=(0, 1), b=(0, 2), liar=(U64_MAX, U64_MAX))
    assert node.sync_distance() <= 2
    assert node.sync.far_ahead_peer() is None, "sync followed the liar's height"
    with TestClient(build_app(node)) as client:
        r = client.get("/health")
    assert r.status_code == 200, r.json()
    assert r.json()["reasons"] == []


def test_sync_prefers_peers_whose_claims_brought_blocks(node: Node) -> None:
    far = FAR_BEHIND + 100
    claims(node, a=(far, 1), b=(far, 1), liar=(U64_MAX, 1))
    first = node.sync.far_ahead_peer()
    assert first is not None
    node.sync.note_probe(first, 0)  # it claimed to be ahead and sent nothing
    second = node.sync.far_ahead_peer()
    assert second is not None and second != first
    node.sync.note_probe(first, 5)  # now its blocks came: no longer held against it
    assert node.sync.fruitless.get(first) is None


# --- honest /health (defect 4) -------------------------------------------------------------------------


def test_health_fails_with_no_chain_peers_after_the_grace_period(node: Node) -> None:
    with TestClient(build_app(node)) as client:
        assert client.get("/health").status_code == 200, "a node just started must not flap to failing"
        node.health.started -= HEALTH_GRACE_S + 1
        r = client.get("/health")
        assert r.status_code == 503
        assert "no chain peers" in r.json()["reasons"]
        st = client.get("/status").json()
    assert st["chain_peers"] == 0 and st["bans"] == 0 and st["banned_now"] == 0
    assert isinstance(st["last_commit_age_ms"], int)


def test_health_fails_when_the_committee_goes_on_without_us(net: tuple[list[Any], Path], node: Node) -> None:
    """Three validators commit without us; we receive only their later blocks (signed, but their parents
    never come): verified blocks prove the committee advanced, so a long time without a commit fails."""
    plans, genesis_path = net
    genesis = load_genesis(str(genesis_path))
    clock = FakeClock()
    clock.t = time.time() - 60  # their blocks must not be ahead of our real clock
    others = [Chain(p.home.parent / f"other{i}", genesis, keypair=p.validator, clock=clock)
              for i, p in enumerate(plans[1:], 1)]
    step(others, clock, 30)
    assert others[0].height > 0
    node.health.started -= HEALTH_GRACE_S + 1
    claims(node, a=(0, 0), b=(0, 0))  # peers connected, and claiming nothing: proof comes from blocks
    for data in others[0].blocks_by_round(0, 15, 1 << 30, 1000):
        node.chain.receive_block(data, "a")
    assert node.chain.height == 0
    assert node.health_reasons() and all("no commit" not in r for r in node.health_reasons())
    assert any(r.startswith("behind") for r in node.health_reasons())
    node.health.last_commit_at -= STALL_TIMEOUTS * node.chain.params.leader_timeout_ms / 1000 + 1
    assert any(r.startswith("no commit") for r in node.health_reasons())
    for c in others:
        c.close()


def test_gossiped_transaction_with_a_forged_signature_is_rejected(tmp_path: Path) -> None:
    """REJECT (the forwarder is charged by gossip) for a forged signature; IGNORE for an unpayable fee,
    which may be an honest race with a spend the forwarder had not seen."""
    plans, _ = generate(tmp_path / "net", hosts=["127.0.0.1"], chain_id=CHAIN, funded={"rich": 10**12})
    n = Node(plans[0].home, load_config(plans[0].home))
    try:
        n.peer_id = "me"
        rich, poor = account(tmp_path / "net", "rich"), Keypair(b"\x55" * 32)

        def tx(kp: Keypair) -> bytes:
            body = Transaction(CHAIN, kp.public, 0, Transfer(bytes(32), 1), 0)
            return SignedTransaction(body, bytes(64)).to_bytes()

        assert n.gossip_in.on_tx("peer", tx(rich)) is Verdict.REJECT
        assert n.gossip_in.on_tx("peer", tx(poor)) is Verdict.IGNORE
    finally:
        n.close()


def test_p2p_charges_and_bans_reach_metrics(node: Node) -> None:
    """Issue 13: what peers are charged for is visible to an operator in /metrics, not only in logs."""
    from prometheus_client import generate_latest

    exc = refusal(node.service.serve_blocks("mallory", FetchBlocks(0, (), 9, 2).to_bytes()))
    node.stack.host.limiter.penalize("mallory", exc.penalty)
    node.stack.metrics.charges["/tensornet/blocks/1:bad_request"] += 1
    node.stack.host.limiter.ban("eve")
    node.refresh_metrics()
    text = generate_latest(node.metrics.registry).decode()
    assert 'tensornet_p2p_events{family="penalties",key="bad_request"} 1.0' in text
    assert 'tensornet_p2p_events{family="charges",key="/tensornet/blocks/1:bad_request"} 1.0' in text
    assert 'tensornet_p2p_events{family="bans",key="now"} 1.0' in text
