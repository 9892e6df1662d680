"""Regenerate spec/vectors/wire/*.json: `python -m tests.protocol.gen_wire_vectors`.

Deterministic: the same bytes every run.

Each vector names a top-level message type and carries the wire bytes in hex, the decoded form in a
JSON-friendly diagnostic notation (`diag`), the test key seed that signed it, the signature, the chain id it was
signed for, the chain id a receiver verifies against, and the expected verdict: "ok" or the name of the
protocol.errors class the receiver must raise. tests/protocol/test_wire_vectors.py checks every verdict.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from protocol import codec, crypto, messages
from protocol.crypto import Domain, Keypair
from protocol.errors import ProtocolError
from protocol.messages import (
    Block,
    BlockRef,
    CommitVote,
    Query,
    Response,
    SetWeights,
    SignedBlock,
    SignedQuery,
    SignedResponse,
    SignedTransaction,
    Transaction,
    Transfer,
)

OUT = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "wire"
CHAIN = "tensornet-vectors"
OTHER_CHAIN = "tensornet-elsewhere"


# The verdict each invalid vector is built to provoke; every other vector must be "ok". The generator refuses to
# write a file where the implementation disagrees, so the files state intent rather than snapshot behaviour.
INTENDED = {
    "tampered-signature": "BadSignatureError",
    "tampered-body": "BadSignatureError",
    "wrong-chain": "WrongChainError",
    "relabelled-chain": "BadSignatureError",
    "wrong-domain": "BadSignatureError",
    "wrong-signer": "BadSignatureError",
    "non-canonical-head": "NonCanonicalError",
    "non-canonical-int": "NonCanonicalError",
    "unsorted-keys": "UnsortedKeysError",
    "indefinite-map": "IndefiniteLengthError",
    "trailing-bytes": "TrailingBytesError",
    "truncated": "TruncatedError",
    "tagged": "UnsupportedTypeError",
    "duplicate-key": "DuplicateKeyError",
    "unknown-field": "UnknownFieldError",
    "missing-field": "MissingFieldError",
    "wrong-type": "FieldTypeError",
    "short-signature": "FieldTypeError",
    "out-of-range": "FieldTypeError",
    "negative": "FieldTypeError",
    "float": "UnsupportedTypeError",
    "unknown-call": "FieldTypeError",
    "list-over-cap": "FieldTypeError",
    "oversized": "OversizeError",
    "block-parents-over-cap": "FieldTypeError",
    "block-wrong-committee-key": "BadSignatureError",
}


def key(i: int) -> tuple[bytes, Keypair]:
    """Deterministic test key number `i`: seed = BLAKE2b-256("tensornet wire vector key <i>")."""
    seed = crypto.digest(b"tensornet wire vector key %d" % i)
    return seed, Keypair(seed)


def diag(value: Any) -> Any:
    """JSON-friendly diagnostic form: bytes as {"bytes": hex}; maps with non-text keys as {"map": [[k, v]...]}."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, list):
        return [diag(v) for v in value]
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            return {k: diag(v) for k, v in value.items()}
        return {"map": [[diag(k), diag(v)] for k, v in value.items()]}
    return value  # int (exact in JSON text, beyond 2**53 too), str, bool, None


def vector(
    name: str,
    cls: type[messages.Message],
    data: bytes,
    note: str,
    *,
    seed: bytes | None = None,
    signature: bytes | None = None,
    chain_id: str | None = None,
    verify_chain_id: str | None = None,
    public: bytes | None = None,
) -> dict[str, Any]:
    try:  # null when the bytes are not one canonical CBOR item within the type's size cap
        decoded = diag(codec.decode(data, max_size=cls.MAX_SIZE))
    except ProtocolError:
        decoded = None
    expected = verdict(cls, data, verify_chain_id, public)
    if expected != INTENDED.get(name, "ok"):
        raise AssertionError(f"vector {name}: built to give {INTENDED.get(name, 'ok')}, the code says {expected}")
    return {
        "name": name,
        "type": cls.__name__,
        "note": note,
        "hex": data.hex(),
        "decoded": decoded,
        "key": seed.hex() if seed is not None else None,
        "public": public.hex() if public is not None else None,
        "signature": signature.hex() if signature is not None else None,
        "chain_id": chain_id,
        "verify_chain_id": verify_chain_id,
        "expected": expected,
    }


def verdict(cls: type[messages.Message], data: bytes, chain_id: str | None, public: bytes | None) -> str:
    """What a receiver concludes: decode, then (for signed envelopes) check chain id and signature."""
    try:
        msg = cls.from_bytes(data)
        if isinstance(msg, messages.Signed):
            msg.verify(chain_id or "", public)
    except ProtocolError as exc:
        return type(exc).__name__
    return "ok"


def signed_vector(name: str, msg: messages.Signed, seed: bytes, note: str, **kw: Any) -> dict[str, Any]:
    kp = Keypair(seed)
    base = {
        "seed": seed,
        "signature": msg.signature,
        "chain_id": msg.body.chain_id,
        "verify_chain_id": msg.body.chain_id,
        "public": kp.public,
    }
    return vector(name, type(msg), kw.pop("data", msg.to_bytes()), note, **(base | kw))


# --- the vectors -------------------------------------------------------------------------------


def set_weights_tx(seed_no: int = 1, chain: str = CHAIN, n: int = 8) -> tuple[SignedTransaction, bytes]:
    seed, kp = key(seed_no)
    call = SetWeights(netuid=1, uids=tuple(range(n)), values=tuple((i * 7919) % 65536 for i in range(n)), version_key=3)
    return SignedTransaction.create(Transaction(chain, kp.public, 42, call, 1000), kp), seed


def governance_txs() -> list[tuple[str, SignedTransaction, bytes, str]]:
    """A propose and a vote transaction (spec/economics.md §2)."""
    seed, kp = key(7)
    propose = messages.Propose("max_subnets", 48, "room for more subnets")
    vote = messages.Vote(3, 2)
    return [
        ("tx-propose", SignedTransaction.create(Transaction(CHAIN, kp.public, 5, propose, 0), kp), seed,
         "a signed propose transaction: max_subnets = 48"),
        ("tx-vote", SignedTransaction.create(Transaction(CHAIN, kp.public, 6, vote, 0), kp), seed,
         "a signed vote: abstain (2) on proposal 3"),
    ]


def signed_block() -> tuple[SignedBlock, bytes]:
    seed, kp = key(2)
    tx, _ = set_weights_tx()
    t_seed, t_kp = key(3)
    transfer = SignedTransaction.create(Transaction(CHAIN, t_kp.public, 0, Transfer(key(4)[1].public, 10**12), 0), t_kp)
    parents = tuple(BlockRef(6, i, crypto.digest(b"parent %d" % i)) for i in range(4))
    block = Block(
        CHAIN,
        1,
        7,
        2,
        1_800_000_000_000,
        parents,
        (tx.to_bytes(), transfer.to_bytes()),
        (CommitVote(5, crypto.digest(b"commit 5")),),
    )
    return SignedBlock.create(block, kp), seed


def signed_query() -> tuple[SignedQuery, bytes]:
    seed, kp = key(5)
    miner = key(6)[1].public  # the key that signs the response vector
    q = Query(CHAIN, 1, kp.public, miner, bytes(range(16)), 1_800_000_000_123, codec.encode({"prompt": "hello"}))
    return SignedQuery.create(q, kp), seed


def signed_response() -> tuple[SignedResponse, bytes]:
    seed, kp = key(6)
    r = Response(CHAIN, 1, kp.public, bytes(range(16)), 0, codec.encode({"text": "world"}))
    return SignedResponse.create(r, kp), seed


def valid_vectors() -> list[dict[str, Any]]:
    tx, tx_seed = set_weights_tx()
    block, block_seed = signed_block()
    query, q_seed = signed_query()
    response, r_seed = signed_response()
    out = [
        signed_vector("tx-set-weights", tx, tx_seed, "a signed set_weights transaction"),
        signed_vector("tx-set-weights-64", set_weights_tx(n=64)[0], tx_seed, "64 weights: 2- and 3-byte ints"),
        *[signed_vector(name, tx, seed, note) for name, tx, seed, note in governance_txs()],
        signed_vector("block", block, block_seed, "a signed block: 4 parents, 2 txs, 1 commit vote"),
        signed_vector("query", query, q_seed, "a validator's signed query"),
        signed_vector("response", response, r_seed, "a miner's signed response"),
    ]
    ref = BlockRef(2**64 - 1, 2**32 - 1, b"\xff" * 32)
    out.append(vector("blockref-max", BlockRef, ref.to_bytes(), "every integer at its maximum (8- and 4-byte heads)"))
    status = messages.Status(CHAIN, crypto.digest(b"genesis"), 1000, crypto.digest(b"head"), 3, 3001, True)
    out.append(vector("status", messages.Status, status.to_bytes(), "the handshake"))
    fetch = messages.FetchBlocks(1, (ref,), 0, 0)
    out.append(vector("fetch-blocks", messages.FetchBlocks, fetch.to_bytes(), "blocks by reference"))
    commit = messages.CommitsResponse((_commit(),))
    out.append(vector("commits-response", messages.CommitsResponse, commit.to_bytes(), "one commit of 3 blocks"))
    out.append(vector("fetch-commits", messages.FetchCommits, messages.FetchCommits(0, 23).to_bytes(), "a range"))
    return out


def _commit() -> messages.Commit:
    """A Commit built from the schema's field names, so a field added to Commit gets a default here."""
    refs = tuple(BlockRef(9, i, crypto.digest(b"b%d" % i)) for i in range(3))
    values = {"index": 17, "leader": refs[2], "blocks": refs, "prev_digest": crypto.digest(b"commit 16")}
    values |= {name: 0 for name, _ in messages.Commit._fields if name not in values}
    return messages.Commit(**values)


def _reencode(obj: Any) -> bytes:
    return codec.encode(obj)


def invalid_vectors() -> list[dict[str, Any]]:
    tx, seed = set_weights_tx()
    kp = Keypair(seed)
    raw = tx.to_bytes()
    obj = tx.to_obj()
    out = []

    def bad(name: str, data: bytes, note: str, **kw: Any) -> None:
        out.append(signed_vector(name, tx, seed, note, data=data, **kw))

    # signatures and chains
    sig = bytearray(tx.signature)
    sig[0] ^= 1
    bad("tampered-signature", dataclasses.replace(tx, signature=bytes(sig)).to_bytes(), "one bit of R flipped")
    moved = dataclasses.replace(tx, body=dataclasses.replace(tx.body, nonce=43))
    bad("tampered-body", moved.to_bytes(), "nonce changed after signing")
    bad("wrong-chain", raw, "signed for this chain, received on another", verify_chain_id=OTHER_CHAIN)
    relabel = dataclasses.replace(tx, body=dataclasses.replace(tx.body, chain_id=OTHER_CHAIN))
    bad("relabelled-chain", relabel.to_bytes(), "chain id edited to the receiver's", verify_chain_id=OTHER_CHAIN)
    other_domain = kp.sign(Domain.BLOCK, CHAIN, tx.body.to_bytes())
    bad("wrong-domain", dataclasses.replace(tx, signature=other_domain).to_bytes(), "signed under the block domain")
    other, _ = set_weights_tx(seed_no=9)
    bad("wrong-signer", dataclasses.replace(tx, signature=other.signature).to_bytes(), "another key's signature")

    # canonical form
    bad("non-canonical-head", b"\xb8\x02" + raw[1:], "the top map head in the 2-byte form")
    i = raw.index(bytes.fromhex("656e6f6e6365182a"))  # "nonce": 42
    bad("non-canonical-int", raw[:i] + bytes.fromhex("656e6f6e6365") + b"\x19\x00\x2a" + raw[i + 8 :], "42 as u16")
    body = codec.encode(obj["body"])
    swapped = b"\xa2" + codec.encode("signature") + codec.encode(tx.signature) + codec.encode("body") + body
    bad("unsorted-keys", swapped, "signature before body")
    bad("indefinite-map", b"\xbf" + raw[1:] + b"\xff", "the top map as indefinite-length")
    bad("trailing-bytes", raw + b"\x00", "one byte after the message")
    bad("truncated", raw[:-1], "last byte missing")
    bad("tagged", b"\xd8\x18" + raw, "wrapped in tag 24")
    dup = b"\xa3" + codec.encode("body") + body + codec.encode("body") + body
    bad("duplicate-key", dup + codec.encode("signature") + codec.encode(tx.signature), "body twice")

    # schema
    bad("unknown-field", _reencode(obj | {"memo": "hi"}), "an extra top-level field")
    missing = {"body": {k: v for k, v in obj["body"].items() if k != "nonce"}, "signature": obj["signature"]}
    bad("missing-field", _reencode(missing), "body without nonce")
    wrong = {"body": obj["body"] | {"nonce": "42"}, "signature": obj["signature"]}
    bad("wrong-type", _reencode(wrong), "nonce as text")
    short = {"body": obj["body"], "signature": obj["signature"][:63]}
    bad("short-signature", _reencode(short), "a 63-byte signature")
    call = obj["body"]["call"]
    over = {"body": obj["body"] | {"call": [call[0], call[1] | {"netuid": 65536}]}, "signature": obj["signature"]}
    bad("out-of-range", _reencode(over), "netuid beyond u16")
    negative = {"body": obj["body"] | {"nonce": -1}, "signature": obj["signature"]}
    bad("negative", _reencode(negative), "a negative nonce")
    floaty = {"body": obj["body"] | {"nonce": 42.0}, "signature": obj["signature"]}
    bad("float", codec.encode(floaty, allow_floats=True), "nonce as a float")
    kinds = {"body": obj["body"] | {"call": ["mint", call[1]]}, "signature": obj["signature"]}
    bad("unknown-call", _reencode(kinds), "a call kind that does not exist")
    too_many = call[1] | {"uids": list(range(messages.MAX_WEIGHTS + 1))}
    many = {"body": obj["body"] | {"call": [call[0], too_many]}, "signature": obj["signature"]}
    bad("list-over-cap", _reencode(many), "uids beyond MAX_WEIGHTS")
    target, pad = messages.MAX_TX_SIZE + 1, 0
    oversized = raw
    while len(oversized) != target:  # grow a padding field until the whole message is one byte over the cap
        pad += target - len(oversized)
        oversized = _reencode(obj | {"padding": b"\x00" * pad})
    assert len(oversized) == messages.MAX_TX_SIZE + 1
    bad("oversized", oversized, "MAX_TX_SIZE + 1 bytes: refused on size before any parsing")
    return out


def block_invalid_vectors() -> list[dict[str, Any]]:
    block, seed = signed_block()
    obj = block.to_obj()
    out = []
    too_many = [obj["body"]["parents"][0]] * (messages.MAX_PARENTS + 1)
    over = {"body": obj["body"] | {"parents": too_many}, "signature": obj["signature"]}
    out.append(signed_vector("block-parents-over-cap", block, seed, "MAX_PARENTS + 1 parents", data=_reencode(over)))
    out.append(
        signed_vector(
            "block-wrong-committee-key", block, seed, "verified with a stranger's key", public=key(1)[1].public
        )
    )
    return out


def build() -> dict[str, list[dict[str, Any]]]:
    return {
        "valid.json": valid_vectors(),
        "invalid-transaction.json": invalid_vectors(),
        "invalid-block.json": block_invalid_vectors(),
    }


# --- spec/wire.md field tables ------------------------------------------------------------------

SPEC = Path(__file__).resolve().parents[2] / "spec" / "wire.md"
BEGIN = "<!-- BEGIN GENERATED: python -m tests.protocol.gen_wire_vectors -->"
END = "<!-- END GENERATED -->"


def kind_text(kind: Any) -> str:
    from protocol.schema import Bool, Bytes, ListOf, Nested, OneOf, Text, UInt

    if isinstance(kind, UInt):
        return f"u{kind.bits}"
    if isinstance(kind, Bool):
        return "bool"
    if isinstance(kind, Bytes):
        if kind.size is not None:
            return f"bytes[{kind.size}]"
        return f"bytes ≤ {kind.max_size:,}" if kind.max_size is not None else "bytes"
    if isinstance(kind, Text):
        return f"text ≤ {kind.max_len} chars"
    if isinstance(kind, Nested):
        return f"[{kind.cls.__name__}](#{kind.cls.__name__.lower()})"
    if isinstance(kind, ListOf):
        return f"list ≤ {kind.max_len:,} of {kind_text(kind.item)}"
    if isinstance(kind, OneOf):
        return "one of " + ", ".join(f"`{v.KIND}` [{v.__name__}](#{v.__name__.lower()})" for v in kind.variants)
    raise NotImplementedError(type(kind).__name__)


def field_tables() -> str:
    from protocol.testing.wire_strategies import all_message_types

    lines = [BEGIN, ""]
    for cls in all_message_types():
        lines.append(f"### {cls.__name__}")
        lines.append("")
        facts = []
        if cls.KIND:
            facts.append(f"call kind `{cls.KIND}`")
        if issubclass(cls, messages.Signed):
            facts.append(f"signed under domain `{cls.DOMAIN.value}`, signer field `body.{cls.SIGNER}`")
        if cls.__name__ in messages.WIRE_TYPES:
            facts.append(f"top-level wire type, size cap {cls.MAX_SIZE:,} bytes")
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        if doc and not doc.startswith(cls.__name__ + "("):  # dataclass's generated signature is no doc
            lines += [doc, ""]
        if facts:
            text = "; ".join(facts)
            lines += [text[0].upper() + text[1:] + ".", ""]
        lines += ["| # | field | type |", "|---|---|---|"]
        order = {name: i for i, (_, name, _) in enumerate(cls._wire)}
        for name, kind in cls._fields:
            lines.append(f"| {order[name]} | `{name}` | {kind_text(kind)} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def spec_text() -> str:
    text = SPEC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + field_tables() + text[end:]


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, vectors in build().items():
        text = "[\n" + ",\n".join(json.dumps(v, sort_keys=True) for v in vectors) + "\n]\n"  # a vector per line
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"{path}: {len(vectors)} vectors")
    if SPEC.exists():
        if check:
            if SPEC.read_text() != spec_text():
                stale.append("spec/wire.md")
        else:
            SPEC.write_text(spec_text())
            print(f"{SPEC}: field tables regenerated")
    if stale:
        print("stale vectors (run python -m tests.protocol.gen_wire_vectors):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
