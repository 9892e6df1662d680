"""The validator's weight logic: rate limit, commit-reveal with salts that survive a restart, and how
refusals are handled. The node is a recording double here (the real chain path is in test_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from node.client.api_client import ApiError
from protocol.crypto import Keypair
from protocol.economics.weights import weights_commit_hash
from protocol.messages import CommitWeights, RevealWeights, SetWeights
from subnets.validator import Validator, ValidatorConfig

NETUID = 3
TEMPO = 10


class RecordingNode:
    """Answers what the validator asks with fixed values and records what it sends."""

    def __init__(self, height: int, last_update: int, hotkey: Keypair) -> None:
        self.height = height
        self.last_update = last_update
        self.hotkey = hotkey
        self.sent: list[Any] = []
        self.refuse: dict[type, ApiError] = {}

    def status(self) -> dict[str, Any]:
        return {"height": self.height, "chain_id": "c"}

    def metagraph(self, netuid: int) -> list[dict[str, Any]]:
        return [{"uid": 0, "hotkey": self.hotkey.public.hex(), "last_update": self.last_update, "stake": 1,
                 "validator_permit": True, "axon": None}]

    def send(self, keypair: Keypair, call: Any) -> bytes:
        if type(call) in self.refuse:
            raise self.refuse[type(call)]
        self.sent.append(call)
        return b"\x00" * 32


def make(tmp_path: Path, node: RecordingNode, commit_reveal: bool) -> Validator:
    cfg = ValidatorConfig(home=tmp_path, wallet="w", hotkey="h", netuid=NETUID, node=None, interval_s=0.0)
    v = Validator(cfg, coldkey=lambda: pytest.fail("the coldkey is not needed"), hotkey=node.hotkey)
    v.client = node  # type: ignore[assignment]
    v.root.mkdir(parents=True, exist_ok=True)
    v.hp = {"tempo": TEMPO, "weights_rate_limit": 5, "commit_reveal_enabled": commit_reveal, "reveal_period": 1,
            "weights_version_key": 0}
    v.has_permit = True
    v.load_state()
    return v


def test_set_weights_respects_the_rate_limit(tmp_path):
    node = RecordingNode(height=103, last_update=100, hotkey=Keypair.generate())
    v = make(tmp_path, node, commit_reveal=False)
    v.weights_tick(((1, 2), (65535, 1000)))
    assert node.sent == []  # 103 < 100 + 5
    node.height = 105
    v.weights_tick(((1, 2), (65535, 1000)))
    assert node.sent == [SetWeights(NETUID, (1, 2), (65535, 1000), 0)]


def test_commit_then_reveal_after_a_restart(tmp_path):
    node = RecordingNode(height=50, last_update=0, hotkey=Keypair.generate())
    v = make(tmp_path, node, commit_reveal=True)
    v.weights_tick(((4,), (65535,)))
    (commit,) = node.sent
    assert isinstance(commit, CommitWeights)
    saved = json.loads((v.root / "state.json").read_text())["pending"]
    assert len(saved) == 1 and saved[0]["commit_hash"] == commit.commit_hash.hex()
    # epochs of netuid 3 run where (h + 4) % 11 == 0: 51, 62, ...; the commit is in the epoch ending at 51
    assert saved[0]["reveal_from"] == 52

    restarted = make(tmp_path, node, commit_reveal=True)  # a new process: everything from the file
    restarted.last_weights_at = float("inf")  # only the reveal is under test
    restarted.weights_tick(((), ()))  # height 50: a reveal sent now would land in the commit's own epoch
    assert len(node.sent) == 1
    node.height = 51  # lands at 52 or later: try
    node.refuse[RevealWeights] = ApiError("too early", rule="reveal too early")
    restarted.weights_tick(((), ()))
    assert len(restarted.pending) == 1 and len(node.sent) == 1  # kept for a retry
    del node.refuse[RevealWeights]
    restarted.weights_tick(((), ()))
    reveal = node.sent[-1]
    assert isinstance(reveal, RevealWeights) and reveal.uids == (4,) and reveal.values == (65535,)
    assert weights_commit_hash(node.hotkey.public, NETUID, reveal.uids, reveal.values, reveal.salt, 0) == \
        commit.commit_hash
    assert restarted.pending == [] and json.loads((v.root / "state.json").read_text())["pending"] == []


def test_unrevealable_commit_is_dropped_and_refused_commit_forgotten(tmp_path):
    node = RecordingNode(height=50, last_update=0, hotkey=Keypair.generate())
    v = make(tmp_path, node, commit_reveal=True)
    node.refuse[CommitWeights] = ApiError("rate", rule="weights rate limit")
    v.weights_tick(((4,), (65535,)))
    assert v.pending == [] and json.loads((v.root / "state.json").read_text())["pending"] == []
    del node.refuse[CommitWeights]
    v.weights_tick(((4,), (65535,)))
    assert len(v.pending) == 1
    v.last_weights_at = float("inf")
    node.height = 70
    node.refuse[RevealWeights] = ApiError("expired", rule="commit expired")
    v.weights_tick(((), ()))
    assert v.pending == []
