"""The compute subnet: deterministic matrices, exact products, Freivalds catches every kind of wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protocol import codec
from protocol.errors import DecodeError, FieldTypeError, ValidationError
from protocol.messages import MAX_QUERY_PAYLOAD
from subnets.compute import (
    MAX_INNER,
    MAX_OUTPUT,
    MAX_SCORE,
    PRIME,
    ComputeAnswer,
    ComputeQuery,
    ComputeTask,
    freivalds,
    matrices,
)
from subnets.task import AnswerRejected, ConfigError, QueryRejected

torch.set_num_threads(1)
CPU = torch.device("cpu")
SMALL = {"m": 24, "k": 96, "n": 20}
PINNED_A = [[5, 5, 2, -2, -4, -4, -1, 1], [-4, 6, -3, -6, -6, -8, 3, -8]]
PINNED_B = [6, 7, -4, -1, -1, 1, 1, -7]


@pytest.fixture
def task() -> ComputeTask:
    return ComputeTask(SMALL, secret=b"validator-secret-0123456789abcdef")


@pytest.fixture
def miner(task):
    m = task.load_miner(CPU)
    m.prepare()
    return m


def seed(i: int) -> bytes:
    return i.to_bytes(32, "big")


def true_product(query: ComputeQuery) -> np.ndarray:
    a, b = matrices(query)
    return a.astype(np.int64) @ b.astype(np.int64)


def as_answer(c: np.ndarray) -> ComputeAnswer:
    return ComputeAnswer(c.astype("<i4").tobytes())


def test_matrices_are_deterministic_in_range_and_seed_dependent():
    q = ComputeQuery(seed(1), 8, 16, 4)
    a1, b1 = matrices(q)
    a2, b2 = matrices(q)
    assert a1.shape == (8, 16) and b1.shape == (16, 4)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert a1.min() >= -8 and a1.max() <= 7
    big_a, _ = matrices(ComputeQuery(seed(1), 64, 64, 64))
    assert set(np.unique(big_a).tolist()) == set(range(-8, 8))  # all 16 values occur
    a3, _ = matrices(ComputeQuery(seed(2), 8, 16, 4))
    assert not np.array_equal(a1, a3)


def test_matrix_stream_is_pinned():
    """Miners and validators on other machines must expand a seed identically: pin the first values."""
    a, b = matrices(ComputeQuery(bytes(32), 2, 8, 1))
    # A value change here breaks every deployed miner: it is a protocol change, not a refactor.
    assert a.tolist() == PINNED_A and b.ravel().tolist() == PINNED_B


def test_correct_product_is_accepted_and_faster_scores_higher(task, miner):
    ch = task.challenge(seed(3))
    payload = task.handle(miner, task.encode_query(ch))
    c = np.frombuffer(ComputeAnswer.from_bytes(payload).product, dtype="<i4").reshape(ch.query.m, ch.query.n)
    assert np.array_equal(c, true_product(ch.query))
    assert task.verify(ch, ComputeAnswer.from_bytes(payload))
    fast, slow, slower = (task.score_payload(ch, payload, ms) for ms in (0, 1, 1000))
    assert fast == MAX_SCORE
    assert MAX_SCORE > slow > slower >= 1


def test_score_at_reference_rate_is_half():
    t = ComputeTask({"m": 100, "k": 1000, "n": 100, "rate_gflops": 10}, secret=bytes(32))
    ch = t.challenge(seed(4))
    ans = as_answer(true_product(ch.query))
    # 2e7 FLOP at 10 GFLOP/s take 2 ms
    assert t.score(ch, ans, 2) == MAX_SCORE // 2


@pytest.mark.parametrize("where", [(0, 0), (5, 7), (23, 19)])
@pytest.mark.parametrize("delta", [1, -1, 1000])
def test_single_wrong_entry_is_caught(task, where, delta):
    ch = task.challenge(seed(5))
    c = true_product(ch.query)
    c[where] += delta
    assert task.score(ch, as_answer(c), 0) == 0


def test_wrong_by_a_multiple_of_the_prime_is_caught_by_the_range_check(task):
    """C + PRIME agrees with AB mod p, so only the range check stands between it and acceptance."""
    ch = task.challenge(seed(6))
    c = true_product(ch.query)
    c[2, 3] += PRIME
    a, b = matrices(ch.query)
    assert not freivalds(a, b, c, ch.expected)
    assert task.score(ch, as_answer(c), 0) == 0


def test_extreme_int32_entries_are_rejected_not_overflowed(task):
    ch = task.challenge(seed(7))
    c = true_product(ch.query)
    c[0, 0] = np.iinfo(np.int32).min
    assert task.score(ch, as_answer(c), 0) == 0


def test_truncated_extended_and_misshapen_products_score_zero(task):
    ch = task.challenge(seed(8))
    good = as_answer(true_product(ch.query)).product
    for bad in (good[:-4], good[:-1], good + bytes(4), b"", good[: len(good) // 2]):
        assert task.score_payload(ch, ComputeAnswer(bad).to_bytes(), 0) == 0
        with pytest.raises(AnswerRejected):
            task.score(ch, ComputeAnswer(bad), 0)
    # transposed: right size, wrong layout
    assert task.score(ch, as_answer(true_product(ch.query).T.copy().reshape(ch.query.m, ch.query.n)), 0) == 0


def test_cheap_cheats_score_zero(task):
    ch = task.challenge(seed(9))
    q = ch.query
    other = ComputeQuery(seed(10), q.m, q.k, q.n)
    assert task.score(ch, as_answer(np.zeros((q.m, q.n), np.int64)), 0) == 0
    assert task.score(ch, as_answer(true_product(other)), 0) == 0  # someone else's product
    a, b = matrices(q)
    lossy = (torch.from_numpy(a).half() @ torch.from_numpy(b).half() * 0.999).round().to(torch.int32).numpy()
    assert task.score(ch, as_answer(lossy), 0) == 0


def test_freivalds_detects_one_wrong_entry_under_many_secrets():
    q = ComputeQuery(seed(11), 16, 32, 16)
    a, b = matrices(q)
    c = a.astype(np.int64) @ b.astype(np.int64)
    c[7, 9] += 1
    assert not any(freivalds(a, b, c, i.to_bytes(32, "big")) for i in range(200))
    c[7, 9] -= 1
    assert all(freivalds(a, b, c, i.to_bytes(32, "big")) for i in range(20))


def test_verification_secret_never_reaches_the_miner():
    t1 = ComputeTask(SMALL, secret=b"a" * 32)
    t2 = ComputeTask(SMALL, secret=b"b" * 32)
    c1, c2 = t1.challenge(seed(12)), t2.challenge(seed(12))
    assert t1.encode_query(c1) == t2.encode_query(c2)  # the miner sees the same bytes
    assert c1.expected != c2.expected  # while the vectors differ
    assert b"a" * 32 not in t1.encode_query(c1)
    assert ComputeTask(SMALL).secret != ComputeTask(SMALL).secret  # fresh secret by default


def test_float32_is_exact_at_the_largest_inner_dimension(miner):
    worst_a = np.full((1, MAX_INNER), -8, dtype=np.int8)
    worst_b = np.full((MAX_INNER, 2), -8, dtype=np.int8)
    worst_b[:, 1] = 7
    assert miner.multiply(worst_a, worst_b).tolist() == [[64 * MAX_INNER, -56 * MAX_INNER]]
    q = ComputeQuery(seed(13), 2, MAX_INNER, 2)
    assert miner.answer(q).product == as_answer(true_product(q)).product


def test_miner_refuses_oversized_and_malformed_queries(task, miner):
    for m, k, n in ((0, 4, 4), (4, MAX_INNER + 1, 4), (4097, 1, 1), (1024, 1, 1024), (2**32 - 1, 2**32 - 1, 1)):
        with pytest.raises(QueryRejected):
            task.handle(miner, ComputeQuery(seed(1), m, k, n).to_bytes())
    with pytest.raises(FieldTypeError):
        task.handle(miner, codec.encode({"seed": b"x" * 31, "m": 1, "k": 1, "n": 1}))
    with pytest.raises(DecodeError):
        task.handle(miner, b"\xff\x00")
    with pytest.raises(ValidationError):
        task.decode_query(codec.encode({"seed": bytes(32), "m": 1, "k": 0, "n": 1}))


def test_malformed_answers_score_zero(task):
    ch = task.challenge(seed(14))
    for payload in (b"", b"\x00", b"\xa0", codec.encode({"product": "text"}), codec.encode({"product": b"", "x": 1})):
        assert task.score_payload(ch, payload, 0) == 0
    oversized = codec.encode({"product": bytes(MAX_OUTPUT * 4 + 4)})
    assert task.score_payload(ch, oversized, 0) == 0


def test_largest_answer_fits_a_response_payload():
    assert MAX_OUTPUT * 4 + 16 <= MAX_QUERY_PAYLOAD
    assert len(ComputeAnswer(bytes(MAX_OUTPUT * 4)).to_bytes()) <= MAX_QUERY_PAYLOAD


def test_bad_configuration_is_refused():
    for cfg in ({"m": 0}, {"k": MAX_INNER + 1}, {"m": 4096, "n": 4096}, {"bogus": 1}, {"m": "8"}):
        with pytest.raises(ConfigError):
            ComputeTask(cfg)
    with pytest.raises(ConfigError):
        ComputeTask(secret=b"short")
    t = ComputeTask(SMALL)
    ch = t.challenge(seed(1))
    with pytest.raises(ConfigError):  # the caller's bug is not swallowed as a zero score
        t.score_payload(ch, as_answer(true_product(ch.query)).to_bytes(), -1)
    with pytest.raises(ConfigError):
        t.challenge(b"short seed")


def test_freivalds_is_exact_at_the_largest_magnitudes():
    """Worst-case entries at the largest k: the float64 products stay exact, so nothing is rounded away."""
    a = np.full((3, MAX_INNER), -8, dtype=np.int8)
    a[1] = 7
    b = np.full((MAX_INNER, 4), -8, dtype=np.int8)
    b[:, 1] = 7
    c = a.astype(np.int64) @ b.astype(np.int64)
    assert int(np.abs(c).max()) == 64 * MAX_INNER
    secrets = [bytes([i]) * 32 for i in range(10)]
    assert all(freivalds(a, b, c, s) for s in secrets)
    for delta in (1, -1):
        wrong = c.copy()
        wrong[2, 3] += delta
        assert not any(freivalds(a, b, wrong, s) for s in secrets)
