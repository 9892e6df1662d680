"""The text subnet: a deterministic held-out corpus, real trained models, and scoring by cross-entropy."""

from __future__ import annotations

import math
import os
import shutil
import struct
import sysconfig

import pytest
import torch

from protocol import codec
from protocol.errors import DecodeError, FieldTypeError
from protocol.messages import MAX_QUERY_PAYLOAD
from subnets.task import MAX_SCORE, AnswerRejected, ConfigError, QueryRejected
from subnets.text import (
    BLOCK,
    DIST_SIZE,
    MAX_CONTEXT,
    MAX_WINDOWS,
    TextAnswer,
    TextQuery,
    TextTask,
    load_corpus,
    log2_fixed,
    window_cost,
)

torch.set_num_threads(1)
CPU = torch.device("cpu")
SEEDS = [bytes([i]) * 32 for i in range(1, 7)]


@pytest.fixture(scope="module")
def task() -> TextTask:
    return TextTask()


@pytest.fixture(scope="module")
def miners(task):
    """Real models: untrained, briefly trained, trained longer (same seed, so only the steps differ)."""
    out = {}
    for steps in (0, 15, 250):
        m = task.load_miner(CPU, {"steps": steps, "seed": 7})
        m.prepare()
        out[steps] = m
    return out


def scores(task, miner, seeds=SEEDS) -> list[int]:
    return [task.score_payload(ch, task.handle(miner, task.encode_query(ch))) for ch in map(task.challenge, seeds)]


def uniform(n: int) -> TextAnswer:
    return TextAnswer((struct.pack(">256H", *[1] * 256),) * n)


def test_corpus_is_deterministic_and_split(task):
    c = task.corpus
    again = load_corpus.__wrapped__()  # bypass the cache: read the files again
    assert again.text == c.text and again.digest == c.digest
    assert c.source == "stdlib-list" and len(c.files) >= 8
    held = set(c.held_out_blocks)
    assert 0 < len(held) < len(c.text) // BLOCK // 4
    assert len(c.train_bytes) == len(c.text) - BLOCK * len(held)
    # training text is exactly the non-held-out blocks, in order
    sample = next(i for i in range(len(c.text) // BLOCK) if i not in held)
    assert c.block(sample) in c.train_bytes
    assert all(c.block(i) not in c.train_bytes for i in sorted(held)[:5])


def test_corpus_falls_back_deterministically(tmp_path):
    stdlib = sysconfig.get_paths()["stdlib"]
    shutil.copy(os.path.join(stdlib, "typing.py"), tmp_path / "b_second.py")
    shutil.copy(os.path.join(stdlib, "argparse.py"), tmp_path / "a_first.py")
    glob = load_corpus.__wrapped__(str(tmp_path))
    assert glob.source == "stdlib-glob" and glob.files == ("a_first.py", "b_second.py")
    assert glob.held_out_blocks
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (str(empty), str(tmp_path / "missing")):
        docs = load_corpus.__wrapped__(root)
        assert docs.source == "builtins-docs" and len(docs.text) > 2 * BLOCK and docs.held_out_blocks
    t = TextTask(corpus=load_corpus.__wrapped__(str(empty)))
    assert t.challenge(SEEDS[0]).query == t.challenge(SEEDS[0]).query


def test_challenges_come_from_held_out_text_and_hide_the_target(task):
    ch = task.challenge(SEEDS[0])
    assert ch == task.challenge(SEEDS[0])
    assert ch.query != task.challenge(SEEDS[1]).query
    assert len(ch.query.contexts) == len(ch.expected) == 32
    for (block, offset), ctx, target in zip(task.positions(SEEDS[0]), ch.query.contexts, ch.expected, strict=True):
        assert block in task.corpus.held_out_blocks
        text = task.corpus.block(block)
        assert len(ctx) == 128 and text[offset - 128 : offset] == ctx and text[offset] == target
    assert all(c not in task.corpus.train_bytes for c in ch.query.contexts[:4])


def test_log2_fixed_is_accurate_and_integer():
    for x in (1, 2, 3, 5, 255, 256, 1000, 65535, 65536 * 255, 2**24 - 1):
        assert abs(log2_fixed(x) / 65536 - math.log2(x)) < 2**-15
    assert [log2_fixed(1 << i) for i in range(20)] == [i << 16 for i in range(20)]
    with pytest.raises(ValueError):
        log2_fixed(0)


def test_uniform_costs_exactly_eight_bits_and_scores_zero(task):
    ch = task.challenge(SEEDS[0])
    assert task.mean_cost(ch, uniform(32)) == 8 << 16
    assert task.score(ch, uniform(32)) == 0


def test_better_trained_model_scores_higher(task, miners):
    untrained, brief, longer = (scores(task, miners[s]) for s in (0, 15, 250))
    assert sum(untrained) < sum(brief) < sum(longer)
    assert all(b < lg for b, lg in zip(brief, longer, strict=True))  # on every challenge, not just on average
    assert min(longer) > MAX_SCORE // 3  # under ~5.3 bits per byte on held-out source
    assert miners[250].train_loss < miners[15].train_loss


def test_cheaters_score_below_a_trained_model(task, miners):
    trained = scores(task, miners[250])
    gen = torch.Generator().manual_seed(1)
    for i, ch in enumerate(map(task.challenge, SEEDS)):
        rand = TextAnswer(tuple(bytes(torch.randint(0, 256, (DIST_SIZE,), generator=gen).tolist()) for _ in range(32)))
        spike = TextAnswer((struct.pack(">256H", *([0] * 32 + [65535] + [0] * 223)),) * 32)  # always " "
        for cheat in (uniform(32), rand, spike):
            assert task.score(ch, cheat) < trained[i]
        assert task.score(ch, rand) == 0


def test_an_oracle_scores_near_the_maximum(task):
    ch = task.challenge(SEEDS[2])
    dists = []
    for t in ch.expected:
        masses = [1] * 256
        masses[t] = 65535
        dists.append(struct.pack(">256H", *masses))
    assert task.score(ch, TextAnswer(tuple(dists))) > MAX_SCORE * 99 // 100


def test_zero_mass_on_the_true_byte_is_penalised_not_fatal(task):
    masses = [1] * 256
    masses[65] = 0
    dist = struct.pack(">256H", *masses)
    assert window_cost(dist, 65) == 32 << 16
    with pytest.raises(AnswerRejected):
        window_cost(bytes(DIST_SIZE), 65)


def test_malformed_answers_score_zero(task):
    ch = task.challenge(SEEDS[3])
    good = uniform(32).to_bytes()
    bad_payloads = [
        b"",
        b"\xff",
        good[:-1],
        good + b"\x00",
        uniform(31).to_bytes(),  # one short
        uniform(33).to_bytes(),  # one too many
        TextAnswer((bytes(DIST_SIZE),) * 32).to_bytes(),  # no mass anywhere
        codec.encode({"dists": [b"\x00" * (DIST_SIZE - 2)] * 32}),
        codec.encode({"dists": [b"\x00" * DIST_SIZE] * (MAX_WINDOWS + 1)}),
        codec.encode({"dists": "nope"}),
        codec.encode({"dists": [], "extra": 1}),
    ]
    for payload in bad_payloads:
        assert task.score_payload(ch, payload) == 0
    with pytest.raises(AnswerRejected):
        task.score(ch, uniform(31))


def test_miner_refuses_malformed_queries(task, miners):
    miner = miners[0]
    with pytest.raises(QueryRejected):
        task.handle(miner, TextQuery(()).to_bytes())
    with pytest.raises(FieldTypeError):
        task.handle(miner, codec.encode({"contexts": [b"x" * (MAX_CONTEXT + 1)]}))
    with pytest.raises(FieldTypeError):
        task.handle(miner, codec.encode({"contexts": [b"x"] * (MAX_WINDOWS + 1)}))
    with pytest.raises(DecodeError):
        task.handle(miner, b"\x9f\xff")


def test_miner_handles_short_and_odd_contexts(task, miners):
    q = TextQuery((b"", b"x", bytes(range(256)) * 2, b"def f(self):\n    return"))
    ans = TextAnswer.from_bytes(task.handle(miners[250], q.to_bytes()))
    assert len(ans.dists) == 4
    for d in ans.dists:
        masses = struct.unpack(">256H", d)
        assert min(masses) >= 1 and 60000 < sum(masses) < 70000
    after_return = struct.unpack(">256H", ans.dists[3])
    assert after_return[ord(" ")] == max(after_return)  # a trained model knows what follows "return"


def test_largest_answer_fits_a_response_payload(task, miners):
    q = TextQuery((b"a" * MAX_CONTEXT,) * MAX_WINDOWS)
    assert len(q.to_bytes()) <= MAX_QUERY_PAYLOAD
    assert len(task.handle(miners[0], q.to_bytes())) <= MAX_QUERY_PAYLOAD


def test_checkpoint_round_trip(task, tmp_path):
    path = str(tmp_path / "model.pt")
    first = task.load_miner(CPU, {"steps": 5, "seed": 3, "checkpoint": path})
    first.prepare()
    assert os.path.exists(path)
    second = task.load_miner(CPU, {"steps": 5, "seed": 99, "checkpoint": path})
    second.prepare()  # loads instead of training
    assert second.train_loss is None
    ch = task.challenge(SEEDS[4])
    assert first.answer(ch.query) == second.answer(ch.query)


def test_bad_configuration_is_refused(task):
    for cfg in ({"windows": 0}, {"windows": MAX_WINDOWS + 1}, {"context": 0}, {"nope": 1}, {"windows": "3"}):
        with pytest.raises(ConfigError):
            TextTask(cfg)
    for cfg in ({"steps": -1}, {"checkpoint": 5}, {"lr": 1}):
        with pytest.raises(ConfigError):
            task.load_miner(CPU, cfg)


def test_miner_init_is_seeded_and_leaves_the_global_rng_alone(task):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = task.load_miner(CPU, {"seed": 5})
    assert torch.equal(torch.rand(3), expected)
    b, c = task.load_miner(CPU, {"seed": 5}), task.load_miner(CPU, {"seed": 6})
    pa, pb, pc = (torch.cat([p.flatten() for p in m.model.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
