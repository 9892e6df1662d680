"""The subnet task plug-in API: what a subnet must define so that miners and validators can run it.

A subnet task is one small class with four parts:

1. `challenge(seed)`: the validator builds a challenge deterministically from a seed (for example a
   chain commit digest mixed with the miner's uid), so any validator can rebuild and audit it.
2. `load_miner(device, config)` returns a `Miner` that owns the miner's model on its device;
   `Miner.prepare()` trains or loads it, `Miner.answer(query)` answers one query.
3. `score(challenge, answer, latency_ms)`: the validator's verdict, an integer in 0..MAX_SCORE that
   depends only on its inputs (and the task's configuration), 0 for a wrong or invalid answer.
4. `Query` and `Answer`: the wire types of the payloads (`protocol.schema` messages, canonical CBOR
   through the one codec) carried in `messages.Query.payload` and `messages.Response.payload`.

Paying clients (`tensornet client query`) use three more hooks: `parse_cli_input` turns command-line
input in the task's natural form into a query, `describe_answer` and `format_answer` show the answer.

The byte-level entry points (`handle` on the miner side, `score_payload` on the validator side) are
what the miner host and validator loop call: they decode with typed errors and never let a
malformed payload crash the caller.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch

from protocol import crypto
from protocol.errors import DecodeError, ProtocolError, ValidationError
from protocol.messages import MAX_QUERY_PAYLOAD
from protocol.schema import Message

MAX_SCORE = 65535  # scores are u16, like weights
SEED_SIZE = 32

Q = TypeVar("Q", bound=Message)
A = TypeVar("A", bound=Message)

ConfigValue = int | str | bool
Config = Mapping[str, ConfigValue]


class SubnetError(ProtocolError):
    """Base of typed errors raised by subnet tasks."""


class ConfigError(SubnetError):
    """A task or miner configuration that is unknown, of the wrong type or out of range."""


class QueryRejected(ValidationError):
    """A decoded query that breaks the task's rules (a miner refuses it instead of answering)."""


class AnswerRejected(ValidationError):
    """A decoded answer that does not fit its challenge (the validator scores it 0)."""


class UnknownTaskError(SubnetError):
    """A task name the registry does not know."""


class CliInputError(SubnetError):
    """A paying client's command-line input that cannot become a query; the message names the option."""


MAX_CLI_FILE = 64 << 20  # bytes a client's --input file may hold; more is a mistake, not a query


@dataclass(frozen=True, slots=True)
class CliInput:
    """What `tensornet client query` was given, for `Task.parse_cli_input`; None where an option is absent.

    The options are generic (every task sees the same ones) so the CLI needs no per-task code; a task
    uses those that fit its query and refuses the rest with `only`, so a misplaced option is an error
    instead of being silently ignored.
    """

    file: Path | None = None  # --input FILE
    text: str | None = None  # --text
    rows: int | None = None  # --rows
    cols: int | None = None  # --cols
    inner: int | None = None  # --inner
    seed: int | None = None  # --seed

    @staticmethod
    def flag(field: str) -> str:
        return "--input" if field == "file" else f"--{field}"

    def given(self) -> list[str]:
        """The fields that were given, in declaration order."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def only(self, task: str, allowed: frozenset[str], usage: str) -> None:
        """Refuse every given option outside `allowed`; `usage` says what the task takes instead."""
        extra = [self.flag(name) for name in self.given() if name not in allowed]
        if extra:
            raise CliInputError(f"{task}: {', '.join(extra)} not used by this subnet; it takes {usage}")

    def read_file(self, task: str) -> bytes:
        """The --input file's bytes, with a one-line error for a missing, unreadable or huge file."""
        assert self.file is not None
        try:
            with self.file.open("rb") as fh:
                data = fh.read(MAX_CLI_FILE + 1)
        except OSError as exc:
            raise CliInputError(f"{task}: cannot read --input {self.file}: {exc.strerror or exc}") from None
        if len(data) > MAX_CLI_FILE:
            raise CliInputError(f"{task}: --input {self.file} is over {MAX_CLI_FILE >> 20} MiB")
        return data


@dataclass(frozen=True, slots=True)
class Challenge(Generic[Q]):
    """One challenge, validator side: `query` goes on the wire, `expected` never leaves the validator."""

    task: str
    seed: bytes
    query: Q
    expected: Any = None


class Miner(Protocol[Q, A]):
    """A miner's model on its device. `prepare` may take a while (training); `answer` must be quick."""

    device: torch.device

    def prepare(self) -> None: ...

    def answer(self, query: Q) -> A: ...


class Task(abc.ABC, Generic[Q, A]):
    """Base of every subnet task; subclasses set the class variables and the abstract methods."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    Query: ClassVar[type[Message]]
    Answer: ClassVar[type[Message]]
    MAX_SCORE: ClassVar[int] = MAX_SCORE
    TIMEOUT_MS: ClassVar[int] = 12_000  # the validator loop's deadline for one answer, send to receive

    # --- the four parts ---------------------------------------------------------------------

    @abc.abstractmethod
    def challenge(self, seed: bytes) -> Challenge[Q]:
        """Build the challenge for `seed` (32 bytes); the same seed gives the same challenge."""

    @abc.abstractmethod
    def load_miner(self, device: torch.device, config: Config | None = None) -> Miner[Q, A]:
        """Create the miner-side state for `device`; call its `prepare()` before answering."""

    @abc.abstractmethod
    def score(self, challenge: Challenge[Q], answer: A, latency_ms: int = 0) -> int:
        """Score a decoded answer in 0..MAX_SCORE; raise `AnswerRejected` for one that does not fit."""

    def check_query(self, query: Q) -> None:
        """Miner side: refuse a decoded query the task's rules forbid (beyond what the schema checks)."""

    # --- byte-level entry points for the miner host and the validator loop -------------------

    def encode_query(self, challenge: Challenge[Q]) -> bytes:
        data = challenge.query.to_bytes()
        if len(data) > MAX_QUERY_PAYLOAD:  # a task bug, not outside input
            raise SubnetError(f"{self.name}: query of {len(data)} bytes exceeds {MAX_QUERY_PAYLOAD}")
        return data

    def decode_query(self, payload: bytes) -> Q:
        """Decode and check a query payload; raises a typed `ProtocolError` on anything wrong."""
        query = self.Query.from_bytes(payload)
        self.check_query(query)  # type: ignore[arg-type]
        return query  # type: ignore[return-value]

    def decode_answer(self, payload: bytes) -> A:
        return self.Answer.from_bytes(payload)  # type: ignore[return-value]

    def handle(self, miner: Miner[Q, A], payload: bytes) -> bytes:
        """Miner host: query bytes in, answer bytes out. Raises `ProtocolError` for a bad query."""
        answer = miner.answer(self.decode_query(payload))
        data = answer.to_bytes()
        if len(data) > MAX_QUERY_PAYLOAD:
            raise SubnetError(f"{self.name}: answer of {len(data)} bytes exceeds {MAX_QUERY_PAYLOAD}")
        return data

    # --- client side (paid queries, spec/economics.md §3) -------------------------------------

    def parse_cli_input(self, given: CliInput) -> bytes:
        """A paying client's command-line input, in the task's natural form -> query payload (canonical CBOR).

        Raise `CliInputError` with one line that names the option, before anything is paid. A task without
        a natural form keeps this default: its clients pass the query's CBOR (`--input-cbor`, `decode_query`).
        """
        raise CliInputError(f"{self.name}: this subnet takes no command-line input; pass its query's CBOR with "
                            "--input-cbor FILE")

    def describe_answer(self, payload: bytes, query: bytes | None = None) -> dict[str, Any]:
        """A JSON-friendly view of an answer (to `query`, when known) for the client. Default: the decoded
        fields, byte strings shortened to their length and first 32 bytes in hex."""
        answer = self.decode_answer(payload)
        return {f.name: _short(getattr(answer, f.name)) for f in dataclasses.fields(answer)}

    def format_answer(self, payload: bytes, query: bytes | None = None) -> str:
        """The answer for people, a few lines. Default: `describe_answer` as `name: value` lines."""
        return "\n".join(f"{k}: {v}" for k, v in self.describe_answer(payload, query).items())

    def score_payload(self, challenge: Challenge[Q], payload: bytes, latency_ms: int = 0) -> int:
        """Validator loop: answer bytes in, score out; any malformed or wrong answer scores 0."""
        try:
            answer = self.decode_answer(payload)
            value = self.score(challenge, answer, latency_ms)
        except (DecodeError, ValidationError):  # the miner's fault; a ConfigError is the caller's and propagates
            return 0
        if type(value) is not int or not 0 <= value <= self.MAX_SCORE:  # a task bug; never pass it on
            raise SubnetError(f"{self.name}: score {value!r} outside 0..{self.MAX_SCORE}")
        return value


def _short(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": len(value), "hex": value[:32].hex()}
    if isinstance(value, tuple | list):
        return [_short(v) for v in value]
    return value


def check_seed(seed: bytes) -> bytes:
    """Challenges are built from exactly 32 bytes, so that two validators cannot disagree on padding."""
    if type(seed) is not bytes or len(seed) != SEED_SIZE:
        raise ConfigError(f"a challenge seed is {SEED_SIZE} bytes, got {seed!r:.40}")
    return seed


def derive(seed: bytes, label: str, size: int = 32) -> bytes:
    """Domain-separated sub-seed: one seed feeds several independent streams without overlap."""
    return crypto.digest(b"tensornet/subnet/" + label.encode() + b"/" + seed)[:size]


def challenge_seed(chain_digest: bytes, validator_nonce: bytes, uid: int) -> bytes:
    """The recommended seed for one query: chain randomness, the validator's own nonce and the uid.

    The chain digest makes the challenge auditable after the fact; the nonce and uid keep miners
    from copying each other's answers to one shared challenge.
    """
    if not 0 <= uid < 1 << 16:
        raise ConfigError(f"uid {uid} outside u16")
    return crypto.digest(b"tensornet/challenge/" + chain_digest + validator_nonce + uid.to_bytes(2, "big"))


def config_int(config: Config | None, key: str, default: int, lo: int, hi: int) -> int:
    """Read one integer option with bounds; a typed error names the option."""
    if not config or key not in config:
        return default
    value = config[key]
    if type(value) is not int:
        raise ConfigError(f"config {key!r} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ConfigError(f"config {key!r} = {value} outside [{lo}, {hi}]")
    return value


def check_config_keys(config: Config | None, known: frozenset[str]) -> None:
    """Refuse misspelt options instead of silently running with defaults."""
    unknown = sorted(set(config or ()) - known)
    if unknown:
        raise ConfigError(f"unknown config option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
