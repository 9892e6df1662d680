"""Seeded byte-level fuzzing of every message type's from_bytes.

The only acceptable outcomes: a typed `ProtocolError`, or a message that re-encodes to exactly the input
(anything accepted is canonical). Any other exception is a bug; the failure names the type and the input hex.
10^5 of each take about 3 s here, so they run by default.
"""

from __future__ import annotations

import random

from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import Signed
from protocol.testing.wire_strategies import all_message_types, valid_samples

TYPES = all_message_types()
# Bytes that are CBOR heads with special meaning: widths, indefinite lengths, break, tags, simple values.
INTERESTING = [0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1F, 0x3B, 0x5F, 0x7F, 0x9F, 0xBF, 0xC2, 0xD8, 0xF7, 0xFF]
VERIFY_KEY = bytes(range(32))


def feed(cls: type, data: bytes, stats: dict[str, int]) -> None:
    try:
        msg = cls.from_bytes(data)
    except ProtocolError as exc:
        stats["rejected"] += 1
        stats[type(exc).__name__] = stats.get(type(exc).__name__, 0) + 1
        return
    except Exception as exc:  # noqa: BLE001 - the point of the test is to catch anything untyped
        raise AssertionError(f"{cls.__name__}.from_bytes({data.hex()}) raised {type(exc).__name__}: {exc}") from exc
    stats["accepted"] += 1
    assert msg.to_bytes() == data, f"{cls.__name__} accepted non-canonical {data.hex()}"
    if isinstance(msg, Signed):
        try:
            msg.verify(getattr(msg.body, "chain_id", ""), VERIFY_KEY if cls.SIGNER == "author" else None)
        except ProtocolError:
            pass


def random_inputs(rng: random.Random, n: int):
    for i in range(n):
        cls = TYPES[i % len(TYPES)]
        shape = rng.random()
        if shape < 0.5:
            data = rng.randbytes(rng.randint(0, 48))
        elif shape < 0.8:  # a map head first, so more inputs get past the first byte
            data = bytes([0xA0 | rng.randint(0, 8)]) + rng.randbytes(rng.randint(0, 64))
        else:  # built from interesting bytes and short text keys
            parts = []
            for _ in range(rng.randint(1, 24)):
                if rng.random() < 0.3:
                    name = rng.choice(cls._fields)[0] if cls._fields else "x"
                    parts.append(codec.encode(name))
                else:
                    parts.append(bytes([rng.choice(INTERESTING)]))
            data = b"".join(parts)
        yield cls, data


def mutate(data: bytes, other: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(8)
    if op == 0 and b:  # bit flips
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # insert
        i = rng.randint(0, len(b))
        b[i:i] = rng.randbytes(rng.randint(1, 4))
    elif op == 2 and b:  # delete
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 4)]
    elif op == 3:  # truncate
        del b[rng.randint(0, len(b)) :]
    elif op == 4:  # splice with another valid message
        b = b[: rng.randint(0, len(b))] + other[rng.randint(0, len(other)) :]
    elif op == 5 and b:  # overwrite with an interesting byte
        b[rng.randrange(len(b))] = rng.choice(INTERESTING)
    elif op == 6 and b:  # duplicate a chunk
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 16))
        b[j:j] = b[i:j]
    else:  # random byte
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def run_random(seed: int, n: int) -> dict[str, int]:
    rng = random.Random(seed)
    stats = {"accepted": 0, "rejected": 0}
    for cls, data in random_inputs(rng, n):
        feed(cls, data, stats)
    return stats


def run_mutations(seed: int, n: int) -> dict[str, int]:
    rng = random.Random(seed)
    samples = valid_samples(seed, per_type=8)
    stats = {"accepted": 0, "rejected": 0}
    for _ in range(n):
        cls, data = rng.choice(samples)
        _, other = rng.choice(samples)
        feed(cls, mutate(data, other, rng), stats)
    return stats


def test_random_bytes():
    stats = run_random(seed=1, n=100_000)
    assert stats["rejected"] + stats["accepted"] == 100_000
    # the inputs reach every layer: head parsing, canonical checks, limits and the schema
    for name in ("TruncatedError", "NonCanonicalError", "UnsupportedTypeError", "MissingFieldError", "FieldTypeError"):
        assert stats.get(name, 0) > 0, stats


def test_mutations():
    stats = run_mutations(seed=2, n=100_000)
    assert stats["rejected"] + stats["accepted"] == 100_000
    assert stats["accepted"] > 1_000 and stats["rejected"] > 50_000, stats  # both paths are exercised
    for name in ("TruncatedError", "TrailingBytesError", "UnsortedKeysError", "UnknownFieldError", "FieldTypeError"):
        assert stats.get(name, 0) > 0, stats


def test_valid_samples_cover_every_type():
    assert {cls for cls, _ in valid_samples(0, 1)} == set(TYPES)
    for cls, data in valid_samples(0, 2):
        assert cls.from_bytes(data).to_bytes() == data
