"""Wire throughput: encode, decode (from_bytes), sign and verify of typical signed messages.

`python -m bench.codec --json` prints one JSON object. Baselines are measured in the same run on the same
bytes: PyNaCl's raw ed25519 verify (and sign) rate, and cbor2's C decoder/encoder, so a figure can be read
against what the machine does without our strictness and schema checks.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import cbor2
import nacl.signing

from protocol import codec, crypto
from protocol.crypto import Keypair
from protocol.messages import (
    Block,
    BlockRef,
    CommitVote,
    SetWeights,
    SignedBlock,
    SignedTransaction,
    Transaction,
    Transfer,
)

CHAIN = "tensornet-bench"


def _key(i: int) -> Keypair:
    return Keypair(crypto.digest(b"bench-key-%d" % i))


def signed_tx(n_weights: int = 64, nonce: int = 7, key: int = 0) -> SignedTransaction:
    """A validator's set_weights over `n_weights` uids: the most common large transaction."""
    kp = _key(key)
    uids = tuple(range(0, 4 * n_weights, 4))
    values = tuple((i * 2654435761) % 65536 for i in range(n_weights))
    call = SetWeights(netuid=3, uids=uids, values=values, version_key=1)
    return SignedTransaction.create(Transaction(CHAIN, kp.public, nonce, call, 0), kp)


def signed_block(n_parents: int = 16, n_txs: int = 48) -> SignedBlock:
    """A round-r block: 16 parents, a payload of signed txs (2/3 transfers, 1/3 64-weight set_weights)."""
    kp = _key(1000)
    parents = tuple(BlockRef(41, i, crypto.digest(b"parent-%d" % i)) for i in range(n_parents))
    payload = []
    for i in range(n_txs):
        if i % 3 == 2:
            payload.append(signed_tx(64, nonce=i, key=i).to_bytes())
        else:
            sender = _key(i)
            body = Transaction(CHAIN, sender.public, i, Transfer(_key(i + 1).public, 10**9 + i), 0)
            payload.append(SignedTransaction.create(body, sender).to_bytes())
    votes = (CommitVote(977, crypto.digest(b"commit-977")), CommitVote(978, crypto.digest(b"commit-978")))
    block = Block(CHAIN, 2, 42, 5, 1_790_000_000_000, parents, tuple(payload), votes)
    return SignedBlock.create(block, kp)


def rate(fn: Callable[[], object], min_time: float, repeats: int) -> float:
    """Operations per second: best of `repeats` timed batches, each at least `min_time` long."""
    n = 1
    while True:  # size the batch
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / 4:
            break
        n *= 2
    n = max(1, int(n * min_time / max(dt, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return 1.0 / best


def measure(name: str, msg: SignedBlock | SignedTransaction, min_time: float, repeats: int) -> dict:
    cls = type(msg)
    data = msg.to_bytes()
    kp = _key(1000) if cls is SignedBlock else _key(0)
    # The bytes the signature covers: a block's signature covers its header, not the whole body (spec/wire.md).
    sbytes = crypto.signing_bytes(cls.DOMAIN, CHAIN, cls.covered(msg.body))
    vk = nacl.signing.VerifyKey(kp.public)
    sk = nacl.signing.SigningKey(kp.seed)
    sig = msg.signature
    assert cls.from_bytes(data) == msg
    assert cbor2.loads(data) is not None

    def verify() -> None:
        msg.verify(CHAIN, kp.public)

    r = {
        "bytes": len(data),
        "encode_per_s": rate(msg.to_bytes, min_time, repeats),
        "decode_per_s": rate(lambda: cls.from_bytes(data), min_time, repeats),
        "codec_decode_per_s": rate(lambda: codec.decode(data, max_size=cls.MAX_SIZE), min_time, repeats),
        "sign_per_s": rate(lambda: cls.create(msg.body, kp), min_time, repeats),
        "verify_per_s": rate(verify, min_time, repeats),
        "decode_verify_per_s": rate(lambda: cls.from_bytes(data).verify(CHAIN, kp.public), min_time, repeats),
        "baseline_nacl_verify_per_s": rate(lambda: vk.verify(sbytes, sig), min_time, repeats),
        "baseline_nacl_sign_per_s": rate(lambda: sk.sign(sbytes), min_time, repeats),
        "baseline_cbor2_decode_per_s": rate(lambda: cbor2.loads(data), min_time, repeats),
        "baseline_cbor2_encode_per_s": rate(lambda: cbor2.dumps(cbor2.loads(data), canonical=True), min_time, repeats),
    }
    r["decode_vs_cbor2"] = r["decode_per_s"] / r["baseline_cbor2_decode_per_s"]
    r["verify_vs_nacl"] = r["verify_per_s"] / r["baseline_nacl_verify_per_s"]
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} | {"name": name}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per timed batch")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    tx = signed_tx()
    block = signed_block()
    result = {
        "benchmark": "wire codec",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cases": [
            measure("signed_tx_set_weights_64", tx, args.min_time, args.repeats),
            measure(f"signed_block_16_parents_{len(block.body.payload)}_txs", block, args.min_time, args.repeats),
        ],
    }
    if args.json:
        json.dump(result, sys.stdout)
        print()
    else:
        for case in result["cases"]:
            print(case["name"], f"({case['bytes']} B)")
            for k, v in case.items():
                if k not in ("name", "bytes"):
                    print(f"  {k:32} {v:>14,.1f}" if isinstance(v, float) else f"  {k:32} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
