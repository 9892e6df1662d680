"""The plug-in API: registry, the byte-level entry points, seeds, devices, and a full signed round trip."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pytest
import torch

from protocol.crypto import Keypair
from protocol.errors import DecodeError, ValidationError
from protocol.messages import Query, Response, SignedQuery, SignedResponse
from protocol.schema import U16, U32, Message, message
from subnets import registry
from subnets.compute import ComputeTask
from subnets.device import select_device, visible_gpu_ids
from subnets.task import (
    MAX_SCORE,
    AnswerRejected,
    Challenge,
    ConfigError,
    SubnetError,
    Task,
    UnknownTaskError,
    challenge_seed,
    check_seed,
    derive,
)
from subnets.text import TextTask

torch.set_num_threads(1)
CPU = torch.device("cpu")
CHAIN = "tensornet-test"


# --- a toy task written against the API, as a new subnet author would -------------------------


@message
class SumQuery(Message):
    a: Annotated[int, U32]
    b: Annotated[int, U32]


@message
class SumAnswer(Message):
    total: Annotated[int, U32]
    extra: Annotated[int, U16]


class SumMiner:
    def __init__(self, device: torch.device, wrong: bool = False) -> None:
        self.device = device
        self.wrong = wrong

    def prepare(self) -> None:
        pass

    def answer(self, query: SumQuery) -> SumAnswer:
        t = torch.tensor([query.a, query.b], device=self.device, dtype=torch.int64).sum().item()
        return SumAnswer(t + int(self.wrong), 0)


class SumTask(Task[SumQuery, SumAnswer]):
    name: ClassVar[str] = "toy-sum"
    Query = SumQuery
    Answer = SumAnswer

    def __init__(self, config=None, *, score_bug: int | None = None) -> None:
        self.score_bug = score_bug

    def challenge(self, seed: bytes) -> Challenge[SumQuery]:
        d = derive(check_seed(seed), "toy")
        a, b = int.from_bytes(d[:3], "big"), int.from_bytes(d[3:6], "big")
        return Challenge(self.name, seed, SumQuery(a, b), a + b)

    def load_miner(self, device, config=None) -> SumMiner:
        return SumMiner(device, bool((config or {}).get("wrong")))

    def score(self, challenge, answer, latency_ms=0) -> int:
        if self.score_bug is not None:
            return self.score_bug
        if answer.extra != 0:
            raise AnswerRejected("toy: extra must be 0")
        return MAX_SCORE if answer.total == challenge.expected else 0


def test_registry_lists_and_creates_the_shipped_tasks():
    assert {"compute", "text"} <= set(registry.names())
    assert registry.get("compute") is ComputeTask and registry.get("text") is TextTask
    t = registry.create("compute", {"m": 4, "k": 4, "n": 4}, secret=bytes(32))
    assert isinstance(t, ComputeTask) and t.secret == bytes(32)


def test_registry_refuses_unknown_duplicate_and_bad_names(monkeypatch):
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))  # keep the toy out of other tests
    with pytest.raises(UnknownTaskError, match="known: .*compute"):
        registry.get("nope")
    with pytest.raises(UnknownTaskError):
        registry.get(None)  # type: ignore[arg-type]

    class Impostor(SumTask):
        name = "text"

    with pytest.raises(ConfigError, match="already taken"):
        registry.register(Impostor)
    with pytest.raises(ConfigError):
        registry.register(int)  # type: ignore[arg-type]

    class BadName(SumTask):
        name = "Has Spaces"

    with pytest.raises(ConfigError):
        registry.register(BadName)
    assert registry.register(SumTask) is SumTask and registry.register(SumTask) is SumTask  # idempotent
    assert registry.get("toy-sum") is SumTask


def test_toy_task_through_the_byte_level_entry_points():
    task = SumTask()
    ch = task.challenge(bytes(32))
    honest, liar = task.load_miner(CPU), task.load_miner(CPU, {"wrong": True})
    assert task.score_payload(ch, task.handle(honest, task.encode_query(ch))) == MAX_SCORE
    assert task.score_payload(ch, task.handle(liar, task.encode_query(ch))) == 0
    assert task.score_payload(ch, SumAnswer(ch.expected, 1).to_bytes()) == 0  # AnswerRejected -> 0
    assert task.score_payload(ch, b"\x00garbage") == 0
    with pytest.raises(DecodeError):
        task.decode_answer(b"\x00garbage")


def test_task_bugs_are_not_hidden_as_zero_scores():
    ch = SumTask().challenge(bytes(32))
    payload = SumAnswer(ch.expected, 0).to_bytes()
    for bug in (-1, MAX_SCORE + 1):
        with pytest.raises(SubnetError):
            SumTask(score_bug=bug).score_payload(ch, payload)


def test_seeds_are_checked_and_domain_separated():
    with pytest.raises(ConfigError):
        check_seed(b"x" * 31)
    with pytest.raises(ConfigError):
        check_seed("x" * 32)  # type: ignore[arg-type]
    chain = bytes(range(32))
    s1, s2, s3 = challenge_seed(chain, b"n1", 1), challenge_seed(chain, b"n1", 2), challenge_seed(chain, b"n2", 1)
    assert len({s1, s2, s3}) == 3 and all(len(s) == 32 for s in (s1, s2, s3))
    assert challenge_seed(chain, b"n1", 1) == s1
    with pytest.raises(ConfigError):
        challenge_seed(chain, b"n", 1 << 16)
    assert derive(s1, "a") != derive(s1, "b")


def test_device_selection(monkeypatch):
    assert visible_gpu_ids({}) is None
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert select_device("cpu") == CPU
    assert select_device("auto", {"CUDA_VISIBLE_DEVICES": ""}) == CPU  # hidden GPUs are never touched
    with pytest.raises(ConfigError):
        select_device("cuda:0", {"CUDA_VISIBLE_DEVICES": ""})
    for bad in ("gpu", "cuda:", "cuda:x", "", None):
        with pytest.raises(ConfigError):
            select_device(bad)  # type: ignore[arg-type]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto", {}) == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("auto", {}) == torch.device("cuda:0")
    assert select_device("cuda:1", {}) == torch.device("cuda:1")
    with pytest.raises(ConfigError):
        select_device("cuda:1", {"CUDA_VISIBLE_DEVICES": "3"})  # only one of the two is visible


@pytest.mark.parametrize("name,config", [("compute", {"m": 16, "k": 32, "n": 8}), ("text", {"windows": 4})])
def test_signed_query_response_round_trip(name, config):
    """What the validator loop and miner host will do, with real keys and the one codec."""
    validator, miner_key = Keypair(bytes([1]) * 32), Keypair(bytes([2]) * 32)
    vtask = registry.create(name, config)
    mtask = registry.create(name, config)
    miner = mtask.load_miner(select_device("cpu"), {"steps": 3} if name == "text" else None)
    miner.prepare()

    ch = vtask.challenge(challenge_seed(bytes(32), b"nonce", 7))
    body = Query(CHAIN, 3, validator.public, miner_key.public, bytes(16), 0, vtask.encode_query(ch))
    query = SignedQuery.create(body, validator)
    received = SignedQuery.from_bytes(query.to_bytes())
    received.verify(CHAIN)
    out = mtask.handle(miner, received.body.payload)
    response = SignedResponse.create(Response(CHAIN, 3, miner_key.public, bytes(16), 0, out), miner_key)
    back = SignedResponse.from_bytes(response.to_bytes())
    back.verify(CHAIN)
    assert vtask.score_payload(ch, back.body.payload, 5) > 0
    empty = vtask.Answer(()) if name == "text" else vtask.Answer(b"")
    with pytest.raises(ValidationError):
        vtask.score(ch, vtask.decode_answer(empty.to_bytes()))


def test_miner_bench_runs_and_verifies_on_a_tiny_shape(capsys):
    from bench import miner as bench_miner

    result = bench_miner.main(["--json", "--device", "cpu", "--shape", "8", "32", "8", "--repeat", "1", "--steps", "2"])
    printed = capsys.readouterr().out
    assert '"baseline_torch_matmul_gflops"' in printed
    assert result["compute"]["shape"] == [8, 32, 8] and result["compute"]["miner_answer_gflops"] > 0
    assert result["text"]["answers_per_s"] > 0 and result["text"]["train_steps"] == 2
