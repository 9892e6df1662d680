"""Proofs for light clients against real chains (4 validators over real SQLite, in-process) and their API (issue 16).

Every validator's block votes for the state roots it executed; GET /proof/{key} and GET /certificate/{height} hand a
client what it needs to check a value without trusting the node (protocol/lightclient.py), and
`tensornet chain balance|stake|neuron --verify` does that check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.api.app import build_app
from node.chain import Chain
from node.metrics import NodeMetrics
from protocol.crypto import Keypair
from protocol.lightclient import vote_digest
from protocol.messages import SignedBlock, SignedTransaction, Transaction, Transfer
from protocol.state.genesis import Genesis
from tests.node.test_chain import FakeClock, make_network, step

UNIT = 10**9
REAL_CLIENT = httpx.Client  # the CLI tests swap httpx.Client, perhaps more than once per test


@dataclass
class Net:
    chains: list[Chain]
    keys: list[Keypair]
    alice: Keypair
    genesis: Genesis
    clock: FakeClock

    @property
    def committee(self) -> dict[bytes, int]:
        return {c.hotkey: c.stake for c in self.genesis.committee}

    def step(self, rounds: int = 1) -> None:
        step(self.chains, self.clock, rounds)


@dataclass
class View:
    """The members of a node the API reads (node/api/view.py): a chain and its metrics."""

    chain: Chain
    metrics: NodeMetrics = field(default_factory=NodeMetrics)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    chains, kps, alice, genesis, clock = make_network(tmp_path)
    bob = Keypair(b"\xbb" * 32)
    tx = SignedTransaction.create(Transaction("test-chain", alice.public, 0, Transfer(bob.public, 7 * UNIT), 0), alice)
    chains[0].submit_tx(tx.to_bytes())
    step(chains, clock, 12)
    assert chains[0].height >= 3
    yield Net(chains, kps, alice, genesis, clock)
    for c in chains:
        c.close()


def http(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url="http://n")


async def get(net: Net, path: str) -> httpx.Response:
    async with http(build_app(View(net.chains[0]))) as h:
        return await h.get(path)


def certificate_of(answer: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(bytes.fromhex(x["signer"]), bytes.fromhex(x["header"])) for x in answer["headers"]]


# --- the votes ------------------------------------------------------------------------------------------


def test_every_validator_votes_for_the_roots_it_executed(net: Net) -> None:
    """Each commit gets one vote from each of the 4 validators, binding its digest and the root every node has."""
    chain = net.chains[0]
    head = chain.height
    net.step(3)  # the blocks after the head carry its votes
    for rec in chain.store.commits(1, head):
        assert all(c.store.commits(rec.index, rec.index)[0].state_root == rec.state_root for c in net.chains)
        voters = chain.votes.voters(rec.index, vote_digest(rec.digest, rec.state_root))
        assert [k for k, _ in voters] == sorted(k.public for k in net.keys), rec.index
        for _, block in voters:  # the vote is in the block the book names, under its author's signature
            sb = SignedBlock.from_bytes(chain.store.get_block(block))
            assert any(v.index == rec.index for v in sb.body.commit_votes)
            sb.verify("test-chain", net.keys[sb.body.author].public)
    assert chain.votes.own() == ()  # our latest block carried what we had executed


def test_a_restarted_node_votes_again(tmp_path: Path) -> None:
    """The book is memory only: a node restarted from its store votes again from its next commit."""
    chains, kps, _, genesis, clock = make_network(tmp_path)
    step(chains, clock, 8)
    chains[0].close()
    chains[0] = Chain(tmp_path / "n0", genesis, keypair=kps[0], clock=clock)
    head = chains[0].height
    step(chains, clock, 10)
    rec = chains[1].store.commits(chains[1].height - 2, chains[1].height - 2)[0]
    assert rec.index > head
    signers = [k for k, _ in chains[1].votes.voters(rec.index, vote_digest(rec.digest, rec.state_root))]
    assert kps[0].public in signers and len(signers) == 4
    for c in chains:
        c.close()
