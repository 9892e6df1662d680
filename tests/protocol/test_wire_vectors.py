"""Every wire vector in spec/vectors/wire/*.json gives its stated verdict.

A failure after a deliberate wire change means the vectors must be regenerated and reviewed:
`python -m tests.protocol.gen_wire_vectors` (the diff is the wire change).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import codec, errors
from protocol.crypto import Keypair
from protocol.errors import ProtocolError
from protocol.testing import wire_strategies
from tests.protocol.gen_wire_vectors import INTENDED, SPEC, build, diag, spec_text

DIR = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "wire"
FILES = sorted(DIR.glob("*.json"))
VECTORS = [(f.name, v) for f in FILES for v in json.loads(f.read_text())]
TYPES = {cls.__name__: cls for cls in wire_strategies.all_message_types()}
REGEN = "wire format changed? regenerate and review: python -m tests.protocol.gen_wire_vectors"


def test_vector_files_exist_and_cover_every_kind_of_failure():
    assert [f.name for f in FILES] == ["invalid-block.json", "invalid-transaction.json", "valid.json"]
    names = [v["name"] for _, v in VECTORS]
    assert len(names) == len(set(names))
    verdicts = {v["expected"] for _, v in VECTORS}
    for needed in (
        "ok",
        "NonCanonicalError",
        "BadSignatureError",
        "WrongChainError",
        "OversizeError",
        "UnknownFieldError",
        "MissingFieldError",
        "FieldTypeError",
    ):
        assert needed in verdicts
    assert set(INTENDED) <= set(names)


@pytest.mark.parametrize(("file", "v"), VECTORS, ids=[v["name"] for _, v in VECTORS])
def test_vector_verdict(file, v):
    cls = TYPES[v["type"]]
    data = bytes.fromhex(v["hex"])
    public = bytes.fromhex(v["public"]) if v["public"] else None
    try:
        msg = cls.from_bytes(data)
        if v["signature"] is not None:
            msg.verify(v["verify_chain_id"], public)
        verdict = "ok"
    except ProtocolError as exc:
        verdict = type(exc).__name__
        assert str(exc)  # every rejection says what went wrong
    assert verdict == v["expected"], REGEN
    assert issubclass(getattr(errors, verdict), ProtocolError) if verdict != "ok" else True
    if verdict == "ok":
        assert msg.to_bytes() == data  # canonical: re-encodes to the very same bytes


@pytest.mark.parametrize(("file", "v"), VECTORS, ids=[v["name"] for _, v in VECTORS])
def test_vector_fields_are_consistent(file, v):
    data = bytes.fromhex(v["hex"])
    cls = TYPES[v["type"]]
    try:
        decoded = diag(codec.decode(data, max_size=cls.MAX_SIZE))
    except ProtocolError:
        decoded = None
    assert decoded == v["decoded"], REGEN
    if v["key"] is not None:
        kp = Keypair(bytes.fromhex(v["key"]))
        assert v["public"] in (kp.public.hex(), None) or v["name"] == "block-wrong-committee-key"
    if v["expected"] == "ok" and v["signature"] is not None:
        msg = cls.from_bytes(data)
        assert msg.signature.hex() == v["signature"]
        assert msg.body.chain_id == v["chain_id"] == v["verify_chain_id"]
        resigned = cls.create(msg.body, Keypair(bytes.fromhex(v["key"])))  # ed25519 is deterministic
        assert resigned.signature == msg.signature


def test_files_match_the_generator():
    """The committed files are exactly what the generator builds now (no hand edits, nothing stale)."""
    for name, vectors in build().items():
        assert json.loads((DIR / name).read_text()) == json.loads(json.dumps(vectors)), f"{name}: {REGEN}"


def test_spec_field_tables_match_the_schema():
    """spec/wire.md §12 is generated from the compiled schema; a new field or message must land there too."""
    assert SPEC.read_text() == spec_text(), f"spec/wire.md field tables are stale: {REGEN}"
    for cls in TYPES.values():
        assert f"### {cls.__name__}\n" in SPEC.read_text()
