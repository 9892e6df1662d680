"""The text subnet: byte-level next-byte prediction on Python's standard library source.

Corpus: a fixed list of stdlib modules (`CORPUS_FILES`, the ones present, in that order), read as
bytes and joined with newlines. Every machine with the same Python build gets the same bytes; the
corpus digest says which text a validator used. Fallbacks, each deterministic: every top-level
`*.py` in the stdlib directory, sorted, when fewer than `MIN_FILES` of the list exist; the
docstrings of `builtins`, sorted by name, when there is no stdlib source at all.

Split: the corpus is cut into `BLOCK`-byte blocks; block i is held out iff the first byte of
BLAKE2b("tensornet/text/split" || i) is below 26 (about 10 %), independent of the text itself.
Miners train on the other blocks; challenges come only from held-out blocks.

Challenge: `windows` positions in held-out blocks chosen from the seed; the query carries each
position's preceding `context` bytes and nothing after, the validator keeps the true next bytes.
(Sending a continuation would let a miner put all its mass on bytes it can see.)

Answer: for each context, 256 big-endian u16 masses q[b] for the next byte; p(b) = q[b] / sum(q).

Score: per window the cost in bits, log2(sum q) - log2(q[target]) (a fixed `ZERO_MASS_BITS` when
q[target] = 0), in integer Q16 fixed point; score = MAX * max(0, 8 - mean cost) / 8. A uniform
answer costs exactly 8 bits and scores 0; a model that compresses held-out text better scores more.
"""

from __future__ import annotations

import builtins
import functools
import os
import struct
import sysconfig
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch

from protocol import crypto
from protocol.schema import Bytes, ListOf, Message, message
from subnets import textmodel
from subnets.task import (
    MAX_SCORE,
    AnswerRejected,
    Challenge,
    CliInput,
    CliInputError,
    Config,
    ConfigError,
    QueryRejected,
    Task,
    check_config_keys,
    check_seed,
    config_int,
    derive,
)

CORPUS_FILES = (
    "abc.py", "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "cmd.py", "codecs.py",
    "colorsys.py", "configparser.py", "contextlib.py", "copy.py", "csv.py", "dataclasses.py", "difflib.py",
    "enum.py", "fnmatch.py", "fractions.py", "functools.py", "getopt.py", "gettext.py", "glob.py", "gzip.py",
    "heapq.py", "hmac.py", "inspect.py", "ipaddress.py", "keyword.py", "linecache.py", "numbers.py",
    "operator.py", "optparse.py", "pprint.py", "queue.py", "random.py", "sched.py", "secrets.py", "shlex.py",
    "shutil.py", "statistics.py", "string.py", "textwrap.py", "threading.py", "tokenize.py", "traceback.py",
    "types.py", "typing.py", "warnings.py", "weakref.py",
)  # fmt: skip
MIN_FILES = 8
BLOCK = 4096
MIN_BLOCKS = 16
HELD_OUT_BELOW = 26  # of 256: about 10 % of blocks

MAX_WINDOWS = 64
MAX_CONTEXT = 512
DEFAULT_WINDOWS = 32
DEFAULT_CONTEXT = 128
DIST_SIZE = 512  # 256 u16 masses
BASELINE_BITS = 8  # a uniform guess
ZERO_MASS_BITS = 32  # cost of giving the true byte no mass at all
FRAC_BITS = 16


# --- corpus --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """The text and its split. `source` says which fallback produced it."""

    text: bytes
    source: str
    files: tuple[str, ...]

    @functools.cached_property
    def digest(self) -> bytes:
        return crypto.digest(self.text)

    @functools.cached_property
    def held_out_blocks(self) -> tuple[int, ...]:
        """Full blocks chosen by hash; if a small fallback corpus draws none, its last full block."""
        full = len(self.text) // BLOCK
        chosen = tuple(i for i in range(full) if is_held_out(i))
        return chosen or ((full - 1,) if full >= 2 else ())

    @functools.cached_property
    def train_bytes(self) -> bytes:
        """The text without its held-out blocks (the partial last block is training text)."""
        held = set(self.held_out_blocks)
        return b"".join(self.text[i : i + BLOCK] for i in range(0, len(self.text), BLOCK) if i // BLOCK not in held)

    def block(self, index: int) -> bytes:
        return self.text[index * BLOCK : (index + 1) * BLOCK]


def is_held_out(block_index: int) -> bool:
    return crypto.digest(b"tensornet/text/split" + block_index.to_bytes(4, "big"))[0] < HELD_OUT_BELOW


def _builtin_docs() -> bytes:
    docs = (getattr(builtins, name).__doc__ or "" for name in sorted(dir(builtins)))
    return "\n".join(docs).encode("utf-8")


@functools.lru_cache(maxsize=4)
def load_corpus(stdlib_dir: str | None = None) -> Corpus:
    """The corpus for `stdlib_dir` (default: this interpreter's stdlib), with the documented fallbacks."""
    root = stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"]
    names = tuple(f for f in CORPUS_FILES if os.path.isfile(os.path.join(root, f)))
    source = "stdlib-list"
    if len(names) < MIN_FILES:
        try:
            names = tuple(sorted(f for f in os.listdir(root) if f.endswith(".py")))
        except OSError:
            names = ()
        source = "stdlib-glob"
    parts = []
    for name in names:
        try:
            with open(os.path.join(root, name), "rb") as fh:
                parts.append(fh.read())
        except OSError:
            continue
    text = b"\n".join(parts)
    if len(text) < MIN_BLOCKS * BLOCK:  # too little to learn from: use text every interpreter has
        return Corpus(_builtin_docs(), "builtins-docs", ())
    return Corpus(text, source, names)


# --- wire types ----------------------------------------------------------------------------------


@message
class TextQuery(Message):
    """Predict the byte after each context."""

    contexts: Annotated[tuple[bytes, ...], ListOf(Bytes(max_size=MAX_CONTEXT), MAX_WINDOWS)]


@message
class TextAnswer(Message):
    """One distribution per context: 256 big-endian u16 masses, p(b) = q[b] / sum(q)."""

    dists: Annotated[tuple[bytes, ...], ListOf(Bytes(size=DIST_SIZE), MAX_WINDOWS)]


# --- integer scoring -----------------------------------------------------------------------------


def log2_fixed(x: int, frac_bits: int = FRAC_BITS) -> int:
    """floor-ish log2(x) * 2^frac_bits for x >= 1, in integers only, so every validator agrees."""
    if x < 1:
        raise ValueError("log2 of a non-positive number")
    ip = x.bit_length() - 1
    one = 1 << 62
    y = (x << 62) >> ip  # mantissa in [1, 2) as Q62
    frac = 0
    for _ in range(frac_bits):
        y = (y * y) >> 62
        frac <<= 1
        if y >= 2 * one:
            y >>= 1
            frac |= 1
    return (ip << frac_bits) | frac


def window_cost(dist: bytes, target: int) -> int:
    """Bits (Q16) the distribution spends on the true byte."""
    masses = struct.unpack(">256H", dist)
    total = sum(masses)
    if total == 0:
        raise AnswerRejected("text: a distribution with no mass")
    mass = masses[target]
    if mass == 0:
        return ZERO_MASS_BITS << FRAC_BITS
    return log2_fixed(total) - log2_fixed(mass)


def encode_probs(probs: torch.Tensor) -> tuple[bytes, ...]:
    """Quantise a (batch, 256) probability tensor to u16 masses; every byte keeps mass >= 1."""
    q = torch.clamp(torch.round(probs.double() * 65535.0), 1, 65535).to(torch.int32).tolist()
    return tuple(struct.pack(">256H", *row) for row in q)


# --- miner ---------------------------------------------------------------------------------------


class TextMiner:
    """A `ByteMLP` trained on the corpus's training blocks; `checkpoint` loads or saves its weights."""

    def __init__(self, device: torch.device, corpus: Corpus, config: Config | None) -> None:
        check_config_keys(config, frozenset({"steps", "batch", "seed", "order", "hidden", "checkpoint"}))
        self.device = device
        self.corpus = corpus
        self.steps = config_int(config, "steps", 300, 0, 10**7)
        self.batch = config_int(config, "batch", 128, 1, 1 << 16)
        self.seed = config_int(config, "seed", 0, 0, (1 << 63) - 1)
        order = config_int(config, "order", 16, 1, MAX_CONTEXT)
        hidden = config_int(config, "hidden", 256, 1, 1 << 14)
        checkpoint = (config or {}).get("checkpoint")
        if checkpoint is not None and type(checkpoint) is not str:
            raise ConfigError("text: config 'checkpoint' must be a path")
        self.checkpoint = checkpoint
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(self.seed)
            self.model = textmodel.ByteMLP(order=order, hidden=hidden).to(device)
        self.model.eval()
        self.train_loss: float | None = None

    def prepare(self) -> None:
        """Load the checkpoint if there is one, otherwise train (and save, if a path was given)."""
        if self.checkpoint and os.path.exists(self.checkpoint):
            state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state)
            self.model.eval()
            return
        data = torch.frombuffer(bytearray(self.corpus.train_bytes), dtype=torch.uint8)
        self.train_loss = textmodel.train(
            self.model, data, self.steps, batch=self.batch, seed=self.seed, device=self.device
        )
        if self.checkpoint:
            torch.save(self.model.state_dict(), self.checkpoint)

    def answer(self, query: TextQuery) -> TextAnswer:
        if not query.contexts:
            return TextAnswer(())
        return TextAnswer(encode_probs(textmodel.next_byte_probs(self.model, query.contexts)))


# --- task ----------------------------------------------------------------------------------------


class TextTask(Task[TextQuery, TextAnswer]):
    """Next-byte prediction on held-out stdlib source, scored by cross-entropy."""

    name: ClassVar[str] = "text"
    TIMEOUT_MS: ClassVar[int] = 5_000
    Query = TextQuery
    Answer = TextAnswer
    CONFIG: ClassVar[frozenset[str]] = frozenset({"windows", "context"})

    def __init__(self, config: Config | None = None, *, corpus: Corpus | None = None) -> None:
        check_config_keys(config, self.CONFIG)
        self.windows = config_int(config, "windows", DEFAULT_WINDOWS, 1, MAX_WINDOWS)
        self.context = config_int(config, "context", DEFAULT_CONTEXT, 1, min(MAX_CONTEXT, BLOCK - 1))
        self._corpus = corpus

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = load_corpus()
        return self._corpus

    def positions(self, seed: bytes) -> list[tuple[int, int]]:
        """(block, offset of the target byte) for each window; a pure function of the seed."""
        blocks = self.corpus.held_out_blocks
        if not blocks:
            raise ConfigError("text: the corpus has no held-out block")
        base = derive(check_seed(seed), "text/windows")
        out = []
        for j in range(self.windows):
            r = int.from_bytes(crypto.digest(base + j.to_bytes(2, "big")), "big")
            block = blocks[r % len(blocks)]
            span = len(self.corpus.block(block)) - self.context
            out.append((block, self.context + (r >> 64) % span))
        return out

    def challenge(self, seed: bytes) -> Challenge[TextQuery]:
        contexts, targets = [], []
        for block, offset in self.positions(seed):
            text = self.corpus.block(block)
            contexts.append(text[offset - self.context : offset])
            targets.append(text[offset])
        return Challenge(self.name, seed, TextQuery(tuple(contexts)), tuple(targets))

    def check_query(self, query: TextQuery) -> None:
        if not query.contexts:
            raise QueryRejected("text: a query with no contexts")

    def parse_cli_input(self, given: CliInput) -> bytes:
        """--text STRING or --input FILE (UTF-8): its last `MAX_CONTEXT` bytes become the one context."""
        usage = "--text STRING or --input FILE (UTF-8 text)"
        given.only(self.name, frozenset({"file", "text"}), usage)
        if (given.file is None) == (given.text is None):
            raise CliInputError(f"text: give one of {usage}")
        where = "--text" if given.file is None else f"--input {given.file}"
        try:
            if given.text is not None:
                data = given.text.encode("utf-8")  # undecodable argv bytes arrive as lone surrogates
            else:
                data = given.read_file(self.name)
                data.decode("utf-8")
        except UnicodeError as exc:
            raise CliInputError(f"text: {where} is not UTF-8 text (bad character at offset {exc.start})") from None
        if not data:
            raise CliInputError(f"text: {where} is empty")
        return TextQuery((data[-MAX_CONTEXT:],)).to_bytes()

    def describe_answer(self, payload: bytes, query: bytes | None = None) -> dict[str, Any]:
        """The five likeliest next bytes per context, with their mass in parts per million."""
        answer = self.decode_answer(payload)
        out = []
        for dist in answer.dists:
            masses = [int.from_bytes(dist[2 * b : 2 * b + 2], "big") for b in range(256)]
            total = sum(masses) or 1
            top = sorted(range(256), key=lambda b: (-masses[b], b))[:5]
            out.append([{"byte": b, "char": chr(b) if 32 <= b < 127 else None, "ppm": masses[b] * 10**6 // total}
                        for b in top])
        return {"next_byte": out}

    def format_answer(self, payload: bytes, query: bytes | None = None) -> str:
        """Per context, its tail and the likeliest next bytes in percent."""
        contexts = self.decode_query(query).contexts if query is not None else ()
        lines = []
        for i, top in enumerate(self.describe_answer(payload)["next_byte"]):
            tail = contexts[i][-30:].decode("utf-8", errors="replace") if i < len(contexts) else ""
            guesses = ", ".join(f"{(t['char'] if t['char'] is not None else hex(t['byte']))!r} {t['ppm'] / 1e4:.1f}%"
                                for t in top)
            lines.append(f"after {tail!r}: {guesses}" if tail else f"context {i}: {guesses}")
        return "\n".join(lines)

    def load_miner(self, device: torch.device, config: Config | None = None) -> TextMiner:
        return TextMiner(device, self.corpus, config)

    def mean_cost(self, challenge: Challenge[TextQuery], answer: TextAnswer) -> int:
        """Mean bits per byte in Q16; raises `AnswerRejected` for an answer of the wrong shape."""
        targets = challenge.expected
        if len(answer.dists) != len(targets):
            raise AnswerRejected(f"text: {len(answer.dists)} distributions for {len(targets)} contexts")
        return sum(window_cost(d, t) for d, t in zip(answer.dists, targets, strict=True)) // len(targets)

    def score(self, challenge: Challenge[TextQuery], answer: TextAnswer, latency_ms: int = 0) -> int:
        baseline = BASELINE_BITS << FRAC_BITS
        gain = baseline - self.mean_cost(challenge, answer)
        return max(0, MAX_SCORE * gain // baseline)
