"""Proofs for light clients against real chains (4 validators over real SQLite, in-process) and their API (issue 16).

Every validator's block votes for the state roots it executed; GET /proof/{key} and GET /certificate/{height} hand a
client what it needs to check a value without trusting the node (protocol/lightclient.py), and
`tensornet chain balance|stake|neuron --verify` does that check.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from typer.testing import CliRunner

from node import certificates
from node.api.app import build_app
from node.chain import Chain
from node.cli.app import build_app as build_cli
from node.metrics import NodeMetrics
from protocol import crypto, proof
from protocol.crypto import Keypair
from protocol.economics.emission import decimal_tokens
from protocol.lightclient import CertificateError, check_certificate, verify_value, vote_digest
from protocol.messages import SignedBlock, SignedTransaction, Transaction, Transfer
from protocol.proof import Proof, ProofError
from protocol.state import keys
from protocol.state.genesis import Genesis, build_genesis
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
    """A node restarted from its store votes again from its next commit."""
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


def test_headers_are_cut_from_their_blocks_once(net: Net) -> None:
    """A client polling a certificate costs the node one block decode per header, not one per request."""
    chain = net.chains[0]
    net.step(3)
    rec = chain.store.commits(2, 2)[0]
    vote = vote_digest(rec.digest, rec.state_root)
    loads: list[bytes] = []

    def load(digest: bytes) -> bytes | None:
        loads.append(digest)
        return chain.store.get_block(digest)

    first = chain.votes.headers(2, vote, load)
    assert chain.votes.headers(2, vote, load) == first and len(first) == 4
    assert sorted(loads) == sorted(block for _, block in chain.votes.voters(2, vote))  # each once
    assert check_certificate("test-chain", net.committee, 2, rec.digest, rec.state_root, first).stake == 4000 * UNIT


def test_every_commit_is_certified_across_epoch_switches(tmp_path: Path) -> None:
    """The closing commit of an epoch is voted for in the next epoch's blocks, under the same keys."""
    kps = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
    genesis = build_genesis("test-chain", validators=[(k.public, 1000 * UNIT) for k in kps], epoch_rounds=8)
    clock = FakeClock()
    chains = [Chain(tmp_path / f"n{i}", genesis, keypair=kps[i], clock=clock) for i in range(4)]
    step(chains, clock, 40)
    chain = chains[0]
    assert chain.epoch >= 2
    committee = {k.public: 1000 * UNIT for k in kps}
    for rec in chain.store.commits(1, chain.height - 3):
        headers = chain.votes.headers(rec.index, vote_digest(rec.digest, rec.state_root), chain.store.get_block)
        cert = check_certificate("test-chain", committee, rec.index, rec.digest, rec.state_root, headers)
        assert cert.stake == 4000 * UNIT, rec.index
    for c in chains:
        c.close()


def epoch_network(tmp_path: Path) -> tuple[list[Chain], list[Keypair], Genesis, FakeClock]:
    kps = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
    genesis = build_genesis("test-chain", validators=[(k.public, 1000 * UNIT) for k in kps], epoch_rounds=8)
    clock = FakeClock()
    return [Chain(tmp_path / f"n{i}", genesis, keypair=kps[i], clock=clock) for i in range(4)], kps, genesis, clock


async def certificate_at(chain: Chain, height: int) -> httpx.Response:
    async with http(build_app(View(chain))) as h:
        return await h.get(f"/certificate/{height}")


async def test_an_epoch_boundary_certificate_outlives_the_vote_window_and_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closing commit of epoch 0 (whose state names epoch 1's committee: what a client that missed the
    boundary needs certified) is served once its votes are final and after a restart. It was forgotten: the
    votes were in memory only, for 512 heights (4 here, so that the window passes in a short test)."""
    monkeypatch.setattr(certificates, "WINDOW", 4)
    chains, kps, genesis, clock = epoch_network(tmp_path)
    chain = chains[0]
    while chain.epoch == 0:
        step(chains, clock, 1)
    boundary = chain.state.epoch_start - 1
    while not chain.votes.final(boundary):
        step(chains, clock, 1)
    rec = chain.store.commits(boundary, boundary)[0]
    committee = {k.public: 1000 * UNIT for k in kps}

    async def served() -> int:
        r = await certificate_at(chains[0], boundary)
        assert r.status_code == 200, r.json()
        body = r.json()
        assert (body["height"], body["state_root"]) == (boundary, rec.state_root.hex())
        return check_certificate("test-chain", committee, boundary, rec.digest, rec.state_root,
                                 certificate_of(body)).stake

    assert await served() == 4000 * UNIT
    chain.close()
    chains[0] = Chain(tmp_path / "n0", genesis, keypair=kps[0], clock=clock)
    assert chains[0].height >= boundary + 4
    assert await served() == 4000 * UNIT
    for c in chains:
        c.close()


async def test_a_certificate_that_cannot_come_is_a_clear_404(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the head, or for a final height whose votes this node does not hold (a store written before votes were
    kept): 404 saying so, not an empty list that a client would poll in vain. A recent height's votes may still
    come: an empty list there, as before."""
    monkeypatch.setattr(certificates, "WINDOW", 4)
    chains, _, _, clock = epoch_network(tmp_path)
    chain = chains[0]
    while not chain.votes.final(2):
        step(chains, clock, 1)
    r = await certificate_at(chain, chain.height + 1)
    assert r.status_code == 404 and r.json()["error"].startswith(f"no commit at height {chain.height + 1}")
    r = await certificate_at(chain, 1)
    assert r.status_code == 200 and len(r.json()["headers"]) == 4  # final, and kept
    with sqlite3.connect(tmp_path / "n0" / "chain.db") as db:
        db.execute("DELETE FROM commit_votes WHERE height IN (1, ?)", (chain.height,))
    r = await certificate_at(chain, 1)
    assert r.status_code == 404, r.json()
    assert r.json()["error"] == "no certificate for height 1: this node kept no votes for its state root"
    r = await certificate_at(chain, chain.height)
    assert r.status_code == 200 and r.json()["headers"] == []
    for c in chains:
        c.close()


# --- the routes -----------------------------------------------------------------------------------------


def keys_of_every_family(net: Net) -> dict[bytes, bool]:
    """One key per family -> whether the chain holds a record there."""
    v = net.keys[0].public
    owner = net.genesis.committee[0].coldkey
    return {
        keys.global_("height"): True,
        keys.account(net.alice.public): True,
        keys.nonce(net.alice.public): True,
        keys.stake(v, owner): True,
        keys.hotkey(v): True,
        keys.subnet(7): False,
        keys.neuron(7, 0): False,
        keys.escrow(0): False,
        keys.proposal(0): False,
        keys.lifecycle(0): False,
    }


async def test_proof_round_trip_per_key_type(net: Net) -> None:
    chain = net.chains[0]
    answers = {key: (await get(net, f"/proof/{key.hex()}")).json() for key in keys_of_every_family(net)}
    net.step(3)
    for key, present in keys_of_every_family(net).items():
        a = answers[key]
        assert a["key"] == key.hex() and (a["value"] is not None) == present, keys.parse(key)
        rec = chain.store.commits(a["height"], a["height"])[0]
        assert a["root"] == rec.state_root.hex() and a["commit_digest"] == rec.digest.hex()
        cert = (await get(net, f"/certificate/{a['height']}")).json()
        assert cert["state_root"] == a["root"] and cert["chain_id"] == "test-chain"
        value = None if a["value"] is None else bytes.fromhex(a["value"])
        c = verify_value("test-chain", net.committee, a["height"], bytes.fromhex(a["commit_digest"]),
                         bytes.fromhex(a["root"]), key, value, bytes.fromhex(a["proof"]), certificate_of(cert))
        assert c.stake == c.total == sum(net.committee.values())
    alice = answers[keys.account(net.alice.public)]
    balance = chain.state.balances[net.alice.public]
    assert 42 * UNIT < balance < 43 * UNIT  # 50 - 7 tokens, less the fee
    assert bytes.fromhex(alice["value"]) == b"\x1b" + balance.to_bytes(8, "big")  # CBOR u64


async def test_tampered_proof_and_wrong_root_rejected(net: Net) -> None:
    key = keys.account(net.alice.public)
    a = (await get(net, f"/proof/{key.hex()}")).json()
    root, value, raw = bytes.fromhex(a["root"]), bytes.fromhex(a["value"]), bytearray.fromhex(a["proof"])
    proof.verify(root, key, value, Proof.from_bytes(bytes(raw)))
    raw[-1] ^= 0x80
    with pytest.raises(ProofError, match="does not lead to the root"):
        proof.verify(root, key, value, Proof.from_bytes(bytes(raw)))
    earlier = net.chains[0].store.commits(1, 1)[0].state_root  # a real root, but not this state's
    with pytest.raises(ProofError, match="does not lead to the root"):
        proof.verify(earlier, key, value, Proof.from_bytes(bytes.fromhex(a["proof"])))


async def test_certificate_of_an_unexecuted_root_is_insufficient(net: Net) -> None:
    net.step(3)
    cert = (await get(net, "/certificate/2")).json()
    headers = certificate_of(cert)
    digest, root = bytes.fromhex(cert["commit_digest"]), bytes.fromhex(cert["state_root"])
    assert check_certificate("test-chain", net.committee, 2, digest, root, headers).stake == 4000 * UNIT
    with pytest.raises(CertificateError, match=f"0 of {4000 * UNIT}"):  # the same votes, another root
        check_certificate("test-chain", net.committee, 2, digest, bytes(32), headers)
    with pytest.raises(CertificateError, match=f"{2000 * UNIT} of {4000 * UNIT}"):  # two of four signers
        check_certificate("test-chain", net.committee, 2, digest, root, headers[:2])


@pytest.mark.parametrize(
    ("path", "status", "match"),
    [
        ("/proof/zz", 400, "hex"),
        ("/proof/" + "00" * 70, 400, "at most 130"),
        ("/proof/0a" + "00" * 8, 400, "unknown key family 10"),
        ("/proof/01" + "00" * 31, 400, "account key: 33 bytes, got 32"),
        ("/proof/00", 400, "global key"),
        ("/certificate/abc", 400, "height must be an integer"),
        ("/certificate/18446744073709551615", 404, "no commit at height"),
    ],
)
async def test_bad_keys_and_heights_are_typed_errors(net: Net, path: str, status: int, match: str) -> None:
    r = await get(net, path)
    assert r.status_code == status and match in r.json()["error"], r.json()


# --- the command ----------------------------------------------------------------------------------------


class StepTransport(httpx.BaseTransport):
    """The real API app, in-process, for the CLI's sync client; the network moves one round per certificate asked
    for (as a live network does while the client polls), and `tamper` may rewrite an answer as a lying node would."""

    def __init__(self, net: Net, tamper: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.net, self.tamper = net, tamper
        self.inner = httpx.ASGITransport(app=build_app(View(net.chains[0])), client=("127.0.0.1", 40000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/certificate/"):
            self.net.step(1)

        async def go() -> httpx.Response:
            resp = await self.inner.handle_async_request(request)
            return httpx.Response(resp.status_code, headers=resp.headers, content=await resp.aread())

        resp = trio.run(go)
        if self.tamper is None or resp.status_code != 200:
            return resp
        return httpx.Response(200, json=self.tamper(request.url.path, resp.json()))


def run_cli(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str],
            tamper: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
            genesis: Genesis | None = None) -> Any:
    import node.client.api_client as nc

    transport = StepTransport(net, tamper)
    monkeypatch.setattr(nc.httpx, "Client", lambda *a, **kw: REAL_CLIENT(*a, **kw, transport=transport))
    g = tmp_path / "genesis.json"
    g.write_text((genesis or net.genesis).to_json())
    return CliRunner().invoke(build_cli(), ["chain", *args, "--node", "http://n", "--genesis", str(g)])


def test_chain_balance_verify(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    addr = crypto.address(net.alice.public)
    r = run_cli(net, monkeypatch, tmp_path, ["balance", addr, "--verify", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    balance = net.chains[0].state.balances[net.alice.public]
    assert out["value"] == balance and out["verified"] is True
    assert out["trusted_stake"] == 4000 * UNIT and out["certified_stake"] in (3000 * UNIT, 4000 * UNIT)  # >= Q
    rec = net.chains[0].store.commits(out["height"], out["height"])[0]
    assert out["root"] == rec.state_root.hex()
    r = run_cli(net, monkeypatch, tmp_path, ["balance", addr, "--verify"])
    assert r.exit_code == 0, r.output
    assert f"balance: {decimal_tokens(balance)} ({balance} units)" in r.output
    assert re.search(rf"verified against root [0-9a-f]{{64}} at height \d+ certified by [34]000000000000 of "
                     rf"{4000 * UNIT} stake", r.output), r.output


def test_chain_stake_and_neuron_verify(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    member = net.genesis.committee[1]
    args = ["stake", crypto.address(member.coldkey), "--hotkey-address", crypto.address(member.hotkey), "--verify",
            "--json"]
    r = run_cli(net, monkeypatch, tmp_path, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["value"] == member.stake
    r = run_cli(net, monkeypatch, tmp_path, ["neuron", "7", "--uid", "0", "--verify"])  # absent, and proven absent
    assert r.exit_code == 0, r.output
    assert "neuron: none" in r.output and "verified against root" in r.output


def test_a_lying_node_is_caught(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    addr = crypto.address(net.alice.public)

    def richer(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.startswith("/proof/"):
            body["value"] = (b"\x1b" + (10**6 * UNIT).to_bytes(8, "big")).hex()
        return body

    r = run_cli(net, monkeypatch, tmp_path, ["balance", addr, "--verify"], tamper=richer)
    assert r.exit_code == 1 and "verification failed" in r.output and "does not match" in r.output, r.output
    r = run_cli(net, monkeypatch, tmp_path, ["balance", addr], tamper=richer)  # unverified, it believes the node
    assert r.exit_code == 0 and "1000000 (" in r.output and "--verify to check it" in r.output, r.output


def test_a_committee_the_client_does_not_trust_certifies_nothing(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The node's own committee signed, but the client trusts other keys: it refuses, after its timeout."""
    strangers = [Keypair(bytes([0x50 + i]) * 32) for i in range(4)]
    other = build_genesis("test-chain", validators=[(k.public, 1000 * UNIT) for k in strangers],
                          balances={net.alice.public: 50 * UNIT})
    import node.client.api_client as nc

    monkeypatch.setattr(nc.time, "monotonic", iter(range(0, 10**6, 5)).__next__)  # 5 s per look: a short wait
    monkeypatch.setattr(nc.time, "sleep", lambda s: None)
    r = run_cli(net, monkeypatch, tmp_path, ["balance", crypto.address(net.alice.public), "--verify"], genesis=other)
    assert r.exit_code == 1, r.output
    assert "verification failed" in r.output and f"0 of {4000 * UNIT} trusted stake" in r.output


def test_trust_moves_forward_through_a_verified_committee(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`chain committee --verify --save F` writes the committee the state holds, checked; `--committee F` trusts it."""
    saved = tmp_path / "committee.json"
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify", "--save", str(saved), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    doc = json.loads(saved.read_text())
    assert out["verified"] is True and doc["chain_id"] == "test-chain" and doc["epoch"] == out["value"]["epoch"] == 0
    assert {crypto.parse_address(m["hotkey"]): m["stake"] for m in doc["members"]} == {
        m.hotkey: m.stake for m in net.chains[0].state.epoch_committee}
    r = run_cli(net, monkeypatch, tmp_path, ["balance", crypto.address(net.alice.public), "--verify", "--committee",
                                             str(saved)])
    assert r.exit_code == 0 and "verified against root" in r.output, r.output
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--save", str(saved)])
    assert r.exit_code == 1 and "add --verify" in r.output
    doc["members"] = [{"hotkey": crypto.address(bytes([0x60 + i]) * 32), "stake": 1} for i in range(4)]
    saved.write_text(json.dumps(doc))
    import node.client.api_client as nc

    monkeypatch.setattr(nc.time, "monotonic", iter(range(0, 10**6, 5)).__next__)
    monkeypatch.setattr(nc.time, "sleep", lambda s: None)
    r = run_cli(net, monkeypatch, tmp_path, ["balance", crypto.address(net.alice.public), "--verify", "--committee",
                                             str(saved)])
    assert r.exit_code == 1 and "0 of 4 trusted stake" in r.output, r.output
    saved.write_text("{}")
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify", "--committee", str(saved)])
    assert r.exit_code == 1 and "cannot read committee file" in r.output, r.output


def test_verify_needs_a_trusted_committee(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENSORNET_GENESIS", raising=False)
    r = CliRunner().invoke(build_cli(), ["chain", "balance", crypto.address(net.alice.public), "--verify",
                                         "--node", "http://n"])
    assert r.exit_code == 1 and "--genesis" in r.output


@pytest.mark.parametrize("verify", [[], ["--verify"]])
def test_a_garbled_answer_is_one_clear_error(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             verify: list[str]) -> None:
    r = run_cli(net, monkeypatch, tmp_path, ["balance", crypto.address(net.alice.public), *verify],
                tamper=lambda path, body: {"value": "zz"})
    assert r.exit_code == 1 and "lacks or garbles" in r.output, r.output
