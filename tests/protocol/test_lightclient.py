"""protocol/lightclient.py: a value is believed only with a proof to a root that a quorum of trusted stake signed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol import codec
from protocol.crypto import Keypair
from protocol.lightclient import (
    CertificateError,
    check_certificate,
    epoch_committee,
    quorum,
    verify_value,
    vote_digest,
)
from protocol.messages import Block, CommitVote, SignedBlock
from protocol.proof import Proof, ProofError
from protocol.state import keys
from protocol.state.tree import MemoryStore, Tree

CHAIN = "lc-test"
KEYS = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
COMMITTEE = {k.public: 10 for k in KEYS}  # T = 40, Q = 27: three signers needed
HEIGHT, COMMIT = 7, bytes(range(32))
PK = bytes(range(100, 132))

ONE_PER_FAMILY = {
    keys.global_("epoch"): b"\x03",
    keys.account(PK): b"\x19\x03\xe8",
    keys.nonce(PK): b"\x05",
    keys.stake(PK, bytes(32)): b"\x18\x64",
    keys.hotkey(PK): b"owner",
    keys.subnet(1): b"subnet-1",
    keys.neuron(1, 0): b"neuron-1-0",
    keys.escrow(4): b"escrow-4",
    keys.proposal(2): b"proposal-2",
    keys.lifecycle(0): b"dereg-0",
}


def header(kp: Keypair, votes: tuple[CommitVote, ...], chain_id: str = CHAIN) -> bytes:
    author = KEYS.index(kp) if kp in KEYS else 0
    block = Block(chain_id, 0, 9, author, 1, (), (), votes)
    return SignedBlock.create(block, kp).signed_header().to_bytes()


def cert(root: bytes, signers: list[Keypair]) -> list[tuple[bytes, bytes]]:
    return [(kp.public, header(kp, (CommitVote(HEIGHT, vote_digest(COMMIT, root)),))) for kp in signers]


@pytest.fixture
def tree() -> Tree:
    t = Tree(MemoryStore())
    t.update(ONE_PER_FAMILY)
    return t


def test_quorum_is_the_committee_rule():
    assert [quorum(t) for t in (1, 3, 4, 40, 100)] == [1, 3, 3, 27, 67]


@pytest.mark.parametrize("key", sorted(ONE_PER_FAMILY))
def test_round_trip_per_key_type(tree, key):
    value, proof = tree.prove(key)
    assert value == ONE_PER_FAMILY[key]
    signed = cert(tree.root, KEYS[:3])
    c = verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, value, proof.to_bytes(), signed)
    assert (c.height, c.root, c.stake, c.total) == (HEIGHT, tree.root, 30, 40)


def test_absent_key_round_trip(tree):
    key = keys.account(bytes(32))
    value, proof = tree.prove(key)
    assert value is None
    verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, None, proof.to_bytes(), cert(tree.root, KEYS))


def test_tampered_proof_and_value_rejected(tree):
    key = keys.account(PK)
    value, proof = tree.prove(key)
    raw = bytearray(proof.to_bytes())
    raw[-1] ^= 1  # a sibling's last bit
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, value, bytes(raw), cert(tree.root, KEYS))
    with pytest.raises(ProofError, match="does not match"):
        verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, b"\x1a\xff\xff\xff\xff", proof.to_bytes(),
                     cert(tree.root, KEYS))
    with pytest.raises(ProofError, match="absence was claimed"):  # the node hides a present key
        verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, None, proof.to_bytes(), cert(tree.root, KEYS))


def test_wrong_root_rejected(tree):
    """A proof to a root the quorum did not sign: a node serving another state fails, however many votes it shows."""
    key = keys.nonce(PK)
    value, proof = tree.prove(key)
    other = Tree(MemoryStore())
    other.update({**ONE_PER_FAMILY, key: b"\x06"})
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, other.root, key, value, proof.to_bytes(), cert(other.root, KEYS))
    with pytest.raises(CertificateError, match="0 of 40"):  # votes for the other root certify nothing here
        verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, value, proof.to_bytes(), cert(other.root, KEYS))


def test_insufficient_certificate_rejected(tree):
    with pytest.raises(CertificateError, match="20 of 40 trusted stake, under the quorum of 27"):
        check_certificate(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, cert(tree.root, KEYS[:2]))
    # the same signer twice counts once
    with pytest.raises(CertificateError, match="20 of 40"):
        check_certificate(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, cert(tree.root, KEYS[:2]) * 3)


def test_forged_certificate_rejected(tree):
    good = cert(tree.root, KEYS[:2])
    vote = (CommitVote(HEIGHT, vote_digest(COMMIT, tree.root)),)
    outsider = Keypair(b"\x99" * 32)
    forged = [
        (outsider.public, header(outsider, vote)),  # not a trusted key
        (KEYS[2].public, header(outsider, vote)),  # a trusted key's name on an outsider's signature
        (KEYS[2].public, header(KEYS[2], vote, chain_id="other-chain")),  # signed for another chain
        (KEYS[2].public, header(KEYS[2], (CommitVote(HEIGHT + 1, vote[0].digest),))),  # the vote of another height
        (KEYS[2].public, header(KEYS[2], (CommitVote(HEIGHT, vote_digest(bytes(32), tree.root)),))),  # another commit
        (KEYS[3].public, b"\x00garbage"),
    ]
    with pytest.raises(CertificateError, match="20 of 40"):
        check_certificate(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, good + forged)
    c = check_certificate(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, good + cert(tree.root, KEYS[2:3]))
    assert c.stake == 30


def test_stake_weighs_not_heads(tree):
    """One key holding over two thirds of the trusted stake certifies alone; three small ones do not."""
    committee = {KEYS[0].public: 70, **{k.public: 10 for k in KEYS[1:]}}
    assert check_certificate(CHAIN, committee, HEIGHT, COMMIT, tree.root, cert(tree.root, KEYS[:1])).stake == 70
    with pytest.raises(CertificateError, match="30 of 100"):
        check_certificate(CHAIN, committee, HEIGHT, COMMIT, tree.root, cert(tree.root, KEYS[1:]))
    with pytest.raises(CertificateError, match="no stake"):
        check_certificate(CHAIN, {}, HEIGHT, COMMIT, tree.root, cert(tree.root, KEYS))


def test_malformed_proof_bytes_rejected(tree):
    key = keys.account(PK)
    with pytest.raises(ProofError, match="starts with"):
        verify_value(CHAIN, COMMITTEE, HEIGHT, COMMIT, tree.root, key, b"x", b"\x07", cert(tree.root, KEYS))
    assert Proof.from_bytes(tree.prove(key)[1].to_bytes()) == tree.prove(key)[1]


def test_lightclient_imports_only_protocol_base():
    code = (
        "import sys, protocol.lightclient\n"
        "bad = [m for m in sys.modules if m.startswith(('protocol.state', 'protocol.consensus', 'protocol.economics',"
        " 'node', 'p2pnet', 'trio', 'httpx'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_epoch_committee_reads_the_epoch_record():
    member = [KEYS[0].public, 70, "12D3KooW", ["/ip4/127.0.0.1/tcp/1"]]
    record = [3, [member, [KEYS[1].public, 30, "p", []]], [], bytes(32), 100, bytes(32)]
    assert epoch_committee(codec.encode(record)) == (3, {KEYS[0].public: 70, KEYS[1].public: 30})
    for bad in ([3, []], [3, [[b"short", 1, "p", []]]], [3, [[KEYS[0].public, 0, "p", []]]], ["3", [member]], 7, [3]):
        with pytest.raises(CertificateError, match="not an epoch record"):
            epoch_committee(codec.encode(bad))
    with pytest.raises(CertificateError, match="not an epoch record"):
        epoch_committee(b"\xff")
