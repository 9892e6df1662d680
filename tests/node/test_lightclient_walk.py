"""A light client walks its trust from the genesis committee to today's, epoch by epoch, trusting no node.

Five in-process chains over real SQLite (tests/node/test_chain.py's lock-step network) with 8-round epochs: in epoch
0 a fifth validator stakes and announces its endpoint and validator 0 adds stake (epoch 1's committee has five
members, other stakes); then validator 3 unstakes (it leaves a later committee). Each node keeps, at every epoch's
closing commit, the proof of the `epoch` record (the next committee) under that commit's root; GET /proof?height
serves it, and `tensornet chain committee --verify` crosses each boundary with the committee it trusts then.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.api.app import build_app
from node.chain import Chain
from node.client.api_client import Crossing, NodeClient
from node.config import GENESIS_FILE
from node.dbcheck import check_store
from protocol import codec, crypto, proof
from protocol.crypto import Keypair
from protocol.lightclient import BoundaryError, next_committee
from protocol.messages import AddStake, RemoveStake, ServeAxon, SignedTransaction, Transaction, Transfer
from protocol.proof import Proof
from protocol.state import keys
from protocol.state.genesis import Endpoint, build_genesis
from tests.node.test_chain import FakeClock
from tests.node.test_proofs import REAL_CLIENT, Net, StepTransport, View, http, run_cli

UNIT = 10**9
EPOCH_KEY = keys.global_("epoch")
EPOCHS = 4  # the network is at least in this epoch when a test starts


def submit(chains: list[Chain], signer: Keypair, call: Any) -> None:
    """Sign `call` at the signer's next nonce and hand it to every node (the lock-step network has no gossip)."""
    nonce = chains[0].next_nonce(signer.public)
    data = SignedTransaction.create(Transaction("test-chain", signer.public, nonce, call, 0), signer).to_bytes()
    for c in chains:
        c.submit_tx(data)


def advance(net: Net, until: Callable[[], bool], what: str, rounds: int = 400) -> None:
    for _ in range(rounds):
        if until():
            return
        net.step(1)
    raise AssertionError(f"not reached in {rounds} rounds: {what}")


def committee_of(chain: Chain) -> dict[bytes, int]:
    return {m.hotkey: m.stake for m in chain.state.epoch_committee}


def build_net(home: Path) -> Net:
    kps = [Keypair(bytes([i + 1]) * 32) for i in range(5)]
    alice = Keypair(b"\xaa" * 32)
    endpoint = Endpoint("12D3KooWgenesis", ("/ip4/127.0.0.1/tcp/1",))  # a consensus endpoint: eligible to stay
    genesis = build_genesis("test-chain", validators=[(k.public, 1000 * UNIT, endpoint) for k in kps[:4]],
                            balances={alice.public: 5000 * UNIT}, epoch_rounds=8)
    clock = FakeClock()
    chains = [Chain(home / f"n{i}", genesis, keypair=kps[i], clock=clock) for i in range(5)]
    net = Net(chains, kps, alice, genesis, clock)
    chain, joiner, leaver = chains[0], kps[4], kps[3]
    submit(chains, alice, AddStake(kps[0].public, 500 * UNIT))
    submit(chains, alice, Transfer(joiner.public, 10 * UNIT))
    submit(chains, alice, Transfer(leaver.public, 10 * UNIT))
    submit(chains, alice, AddStake(joiner.public, 2000 * UNIT))
    advance(net, lambda: joiner.public in chain.state.hotkey_stake, "the joiner's stake")
    submit(chains, joiner, ServeAxon(0, "12D3KooWjoiner", ("/ip4/127.0.0.1/tcp/2",)))
    advance(net, lambda: joiner.public in committee_of(chain), "the joiner in the committee")
    submit(chains, leaver, RemoveStake(leaver.public, 1000 * UNIT))
    advance(net, lambda: leaver.public not in committee_of(chain) and chain.epoch >= EPOCHS, "the leaver gone")
    return net


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = build_net(tmp_path)
    yield n
    for c in n.chains:
        c.close()


def boundaries(chain: Chain) -> list[tuple[int, int]]:
    return chain.store.boundaries()


async def get(chain: Chain, path: str) -> httpx.Response:
    async with http(build_app(View(chain))) as h:
        return await h.get(path)


# --- what a node keeps and serves ---------------------------------------------------------------------


def test_each_closing_commit_keeps_the_next_committee_proven_under_its_root(net: Net) -> None:
    """One proof per epoch boundary, under the root stored for that commit, of the record naming the next epoch's
    committee; the committees really changed (a member joined, stakes moved, a member left)."""
    chain = net.chains[0]
    kept = boundaries(chain)
    assert [e for e, _ in kept] == list(range(chain.epoch)), kept
    committees = []
    for epoch, height in kept:
        rec = chain.store.commits(height, height)[0]
        value, raw = chain.store.boundary_proof(height, EPOCH_KEY)
        proof.verify(rec.state_root, EPOCH_KEY, value, Proof.from_bytes(raw))
        committees.append(next_committee(epoch, height, value))  # names epoch + 1, from height + 1
    assert committees[-1] == committee_of(chain)
    genesis = {c.hotkey: c.stake for c in net.genesis.committee}
    assert committees[0] != genesis  # validator 0's stake moved
    joined = next(i for i, c in enumerate(committees) if net.keys[4].public in c)  # then the fifth joined
    assert net.keys[3].public in committees[joined] and net.keys[3].public not in committees[-1]  # and one left
    assert all(c.store.boundaries() == kept for c in net.chains[1:4])  # every node keeps the same boundaries


async def test_proof_at_a_boundary_height(net: Net) -> None:
    """GET /proof/{key}?height=H answers from the proof kept at boundary H (before: the latest state, whatever H)."""
    chain = net.chains[0]
    epoch, height = boundaries(chain)[1]
    r = await get(chain, f"/proof/{EPOCH_KEY.hex()}?height={height}")
    assert r.status_code == 200, r.json()
    a = r.json()
    rec = chain.store.commits(height, height)[0]
    assert (a["height"], a["root"], a["commit_digest"]) == (height, rec.state_root.hex(), rec.digest.hex())
    assert a["root"] != chain.store.last_commit().state_root.hex()
    value = bytes.fromhex(a["value"])
    proof.verify(rec.state_root, EPOCH_KEY, value, Proof.from_bytes(bytes.fromhex(a["proof"])))
    assert next_committee(epoch, height, value)
    latest = (await get(chain, f"/proof/{EPOCH_KEY.hex()}")).json()  # no height: the latest state, as before
    assert latest["height"] == chain.height


@pytest.mark.parametrize("which", ["not a boundary", "another key", "past the head"])
async def test_a_height_that_is_not_kept_is_a_404_naming_the_served_heights(net: Net, which: str) -> None:
    chain = net.chains[0]
    _, height = boundaries(chain)[0]
    key, at = {"not a boundary": (EPOCH_KEY, height + 1), "another key": (keys.account(net.alice.public), height),
               "past the head": (EPOCH_KEY, 2**64 - 1)}[which]
    r = await get(chain, f"/proof/{key.hex()}?height={at}")
    assert r.status_code == 404
    msg = r.json()["error"]
    heights = ", ".join(str(h) for _, h in boundaries(chain))
    assert msg == (f"no proof of key {key.hex()} at height {at}: past heights are served only at the epoch boundaries "
                   f"(closing commits) this node keeps, for the key {EPOCH_KEY.hex()} (global 'epoch'): heights "
                   f"{heights}"), msg
    assert "\n" not in msg


async def test_boundaries_lists_the_kept_ones(net: Net) -> None:
    chain = net.chains[0]
    r = await get(chain, "/boundaries?from=1")
    assert r.status_code == 200
    assert [(b["epoch"], b["height"]) for b in r.json()] == boundaries(chain)[1:]
    assert [b["epoch"] for b in r.json()] == list(range(1, chain.epoch)) and chain.epoch >= EPOCHS
    r = await get(chain, "/proof/00?height=x")
    assert r.status_code == 400
    r = await get(chain, f"/proof/{EPOCH_KEY.hex()}?height=-1")
    assert r.status_code == 400 and "height must be an integer" in r.json()["error"]


async def test_boundary_proofs_survive_a_restart(net: Net, tmp_path: Path) -> None:
    chain = net.chains[0]
    kept = boundaries(chain)
    _, height = kept[-1]
    before = (await get(chain, f"/proof/{EPOCH_KEY.hex()}?height={height}")).json()
    chain.close()
    net.chains[0] = Chain(tmp_path / "n0", net.genesis, keypair=net.keys[0], clock=net.clock)
    assert boundaries(net.chains[0]) == kept
    r = await get(net.chains[0], f"/proof/{EPOCH_KEY.hex()}?height={height}")
    assert r.status_code == 200 and r.json() == before


class Crash(Exception):
    """The node's process dies here."""


def test_a_crash_right_after_the_closing_commit_keeps_its_proof(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Killed once an epoch's closing commit is stored, before anything after it, a node still keeps that boundary's
    proof: a restart replays the commit without switching epochs, so the proof must be in the commit's transaction."""
    chain = net.chains[0]
    epoch, put = chain.epoch, chain.store.put_commit

    def put_then_die(*args: Any, **kwargs: Any) -> None:
        put(*args, **kwargs)
        if chain.state.epoch != chain.core.epoch:  # that was the closing commit: the core has not switched yet
            raise Crash

    monkeypatch.setattr(chain.store, "put_commit", put_then_die)
    with pytest.raises(Crash):
        advance(net, lambda: False, "the closing commit of the current epoch")
    height = chain.store.last_commit().index
    chain.close()
    net.chains[0] = restarted = Chain(tmp_path / "n0", net.genesis, keypair=net.keys[0], clock=net.clock)
    assert restarted.epoch == epoch + 1 and restarted.height == height
    assert boundaries(restarted)[-1] == (epoch, height), boundaries(restarted)
    value, raw = restarted.store.boundary_proof(height, EPOCH_KEY)
    proof.verify(restarted.store.commits(height, height)[0].state_root, EPOCH_KEY, value, Proof.from_bytes(raw))
    assert next_committee(epoch, height, value) == committee_of(restarted)


@pytest.mark.parametrize("damage", ["proof", "epoch"])
def test_db_check_flags_a_bad_boundary_proof(net: Net, tmp_path: Path, damage: str) -> None:
    """A stored proof that does not lead to the root recorded at its height, or a row naming another epoch than the
    one the proven record closes, is a problem naming the height (light clients walking through it would stop)."""
    chain = net.chains[0]
    home = tmp_path / "n0"
    (home / GENESIS_FILE).write_text(net.genesis.to_json())
    assert check_store(home, replay=False)["problems"] == []
    epoch, height = boundaries(chain)[1]
    if damage == "proof":
        tamper_stored_proof(chain, height)
        reason = "does not check out against the root recorded there"
    else:
        with sqlite3.connect(home / "chain.db") as db:
            db.execute("UPDATE boundary_proofs SET epoch = ? WHERE height = ?", (epoch + 1, height))
        epoch, reason = epoch + 1, "not that epoch's closing commit"
    problems = check_store(home, replay=False)["problems"]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"the boundary proof kept at height {height} (epoch {epoch}'s closing commit)")
    assert reason in problems[0] and "tensornet node join" in problems[0], problems[0]


# --- the walk -----------------------------------------------------------------------------------------


def client_of(net: Net, monkeypatch: pytest.MonkeyPatch,
              tamper: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> NodeClient:
    """A NodeClient on node 0's real API app (the network steps a round per certificate asked for)."""
    import node.client.api_client as nc

    transport = StepTransport(net, tamper)
    monkeypatch.setattr(nc.httpx, "Client", lambda *a, **kw: REAL_CLIENT(*a, **kw, transport=transport))
    return NodeClient("http://n")


def test_the_walk_from_genesis_reaches_the_current_committee(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    genesis = {c.hotkey: c.stake for c in net.genesis.committee}
    seen: list[Crossing] = []
    with client_of(net, monkeypatch) as client:
        steps = client.walk("test-chain", 0, genesis, seen.append)
    chain = net.chains[0]
    assert steps == seen and [s.epoch for s in steps] == list(range(chain.epoch))
    assert steps[-1].committee == committee_of(chain)
    assert [s.height for s in steps] == [h for _, h in boundaries(chain)]
    for s in steps:  # each boundary certified by the committee trusted then, at over 2/3 of its stake
        assert s.certified.total == sum((genesis if s.epoch == 0 else steps[s.epoch - 1].committee).values())
        assert 3 * s.certified.stake > 2 * s.certified.total


def test_committee_verify_walks_from_genesis(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`chain committee --verify` crosses every boundary since the trusted committee's epoch, saying so per epoch,
    and --save writes the committee reached, from which a later walk starts."""
    saved = tmp_path / "committee.json"
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify", "--json", "--save", str(saved)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    chain = net.chains[0]
    assert out["verified"] is True and out["from_epoch"] == 0
    assert [w["epoch"] for w in out["walk"]] == list(range(chain.epoch)) and chain.epoch >= EPOCHS
    doc = json.loads(saved.read_text())
    assert doc["epoch"] == out["value"]["epoch"] == chain.epoch
    assert {crypto.parse_address(m["hotkey"]): m["stake"] for m in doc["members"]} == committee_of(chain)
    advance(net, lambda: chain.epoch >= doc["epoch"] + 2, "two more epochs")
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify", "--committee", str(saved)])
    assert r.exit_code == 0, r.output
    first = doc["epoch"]
    assert f"epoch {first} -> {first + 1} at height " in r.output and f"epoch {first + 1} -> {first + 2}" in r.output
    assert f"epoch {first - 1} -> " not in r.output  # it starts from the saved committee's epoch
    assert f"committee: epoch {chain.epoch}, 4 members" in r.output and "verified against root" in r.output


def tamper_stored_proof(chain: Chain, height: int) -> None:
    with sqlite3.connect(chain.home / "chain.db") as db:
        (raw,) = db.execute("SELECT proof FROM boundary_proofs WHERE height = ?", (height,)).fetchone()
        raw = bytearray(raw)
        raw[-1] ^= 0x01
        db.execute("UPDATE boundary_proofs SET proof = ? WHERE height = ?", (bytes(raw), height))


def test_a_tampered_stored_proof_fails_the_walk_at_its_epoch(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chain = net.chains[0]
    epoch, height = boundaries(chain)[2]
    tamper_stored_proof(chain, height)
    genesis = {c.hotkey: c.stake for c in net.genesis.committee}
    seen: list[Crossing] = []
    with client_of(net, monkeypatch) as client, pytest.raises(BoundaryError) as err:
        client.walk("test-chain", 0, genesis, seen.append)
    assert (err.value.epoch, err.value.height) == (epoch, height) and [s.epoch for s in seen] == [0, 1]
    assert "does not lead to the root" in str(err.value)
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify"])
    assert r.exit_code == 1, r.output
    assert f"walk failed at epoch {epoch}'s closing commit at height {height}" in r.output
    assert f"the committee of epoch {epoch} is the last one verified; ask another node" in r.output
    assert "epoch 1 -> 2 at height" in r.output  # the epochs before it were crossed, and said so


def test_a_forged_certificate_fails_the_walk_at_its_epoch(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A node that serves the headers of keys the client does not trust (its own made-up committee signing the
    boundary's root) certifies nothing: the walk stops at that epoch, typed."""
    chain = net.chains[0]
    epoch, height = boundaries(chain)[1]
    strangers = [Keypair(bytes([0x50 + i]) * 32) for i in range(5)]

    def forge(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == f"/certificate/{height}":
            body["headers"] = [{"signer": k.public.hex(), "header": x["header"]}
                               for k, x in zip(strangers, body["headers"], strict=False)]
        return body

    import node.client.api_client as nc

    monkeypatch.setattr(nc.time, "monotonic", iter(range(0, 10**6, 5)).__next__)  # 5 s per look: a short wait
    monkeypatch.setattr(nc.time, "sleep", lambda s: None)
    genesis = {c.hotkey: c.stake for c in net.genesis.committee}
    with client_of(net, monkeypatch, forge) as client, pytest.raises(BoundaryError) as err:
        client.walk("test-chain", 0, genesis)
    assert (err.value.epoch, err.value.height) == (epoch, height)
    assert "under the quorum" in str(err.value) and "signed by 0 of" in str(err.value)
    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify", "--json"], tamper=forge)
    assert r.exit_code == 1 and f"walk failed at epoch {epoch}'s closing commit at height {height}" in r.output


def test_a_record_that_is_not_the_closing_one_is_refused() -> None:
    """A proven record of the wrong epoch, or of the right one but not at its first height, moves no trust."""
    record = codec.encode([3, [[b"\x01" * 32, 5, "p", []]], [], b"\x00" * 32, 21, b"\x00" * 32])
    assert next_committee(2, 20, record) == {b"\x01" * 32: 5}
    with pytest.raises(BoundaryError, match="epoch 1's closing commit at height 20: the state there is in epoch 3"):
        next_committee(1, 20, record)
    with pytest.raises(BoundaryError, match="not that epoch's closing commit"):
        next_committee(2, 19, record)
    with pytest.raises(BoundaryError, match="holds no epoch record"):
        next_committee(2, 20, None)


def test_a_node_that_hides_later_boundaries_is_caught_at_the_head(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Listing fewer boundaries would leave the client on an old committee: the head's certified record names a later
    epoch than the walk reached, and the command says so instead of trusting either."""

    def hide(path: str, body: Any) -> Any:
        return [b for b in body if b["epoch"] < 2] if path == "/boundaries" else body

    r = run_cli(net, monkeypatch, tmp_path, ["committee", "--verify"], tamper=hide)
    assert r.exit_code == 1, r.output
    assert f"the node's head is in epoch {net.chains[0].epoch}, but it keeps boundary proofs only up to epoch 2" \
        in r.output, r.output
