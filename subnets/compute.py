"""The compute subnet: verified matrix multiplication, scored by speed.

A query names a seed and a shape (m, k, n). Both sides expand the seed into integer matrices
A (m x k) and B (k x n) with entries in [-8, 7]; the miner returns C = A @ B as int32. Every partial
sum is an integer of magnitude <= 64 k <= 2^22 < 2^24, so float32 (and TF32) matmul on any device
computes it exactly, whatever the summation order.

The validator checks C with Freivalds' algorithm over GF(p), p = 2^24 - 3, in O(mk + kn + mn):
for secret random vectors r it tests C r == A (B r) (mod p). Soundness, given a wrong C:
- the range check |C_ij| <= 64 k leaves D = C - AB with 0 < |D_ij| <= 128 k <= 2^23 < p for some entry,
  so D is nonzero mod p too;
- for a nonzero row d of D (mod p) and r uniform in GF(p)^n, d . r is uniform in GF(p), so the test
  passes with probability exactly 1/p;
- with ROUNDS = 2 independent vectors a wrong product escapes with probability <= p^-2 < 2^-47.
The vectors come from the validator's secret and the challenge seed, never from anything the miner
sees, so a miner cannot build a wrong C that passes. Exact arithmetic: |B r| < 2^3 * 2^24 * 2^16 = 2^43
and |A (B r mod p)| < 2^43 are integers that float64 (53-bit mantissa) holds exactly, so those two
products run on BLAS; |C r| < 2^22 * 2^24 * 2^12 = 2^58 needs int64, over the small m x n product.

A correct answer scores `MAX * F / (F + latency_ms * R)`, where F is the challenge's FLOPs and R the
reference rate in FLOP/ms: a miner at the reference rate gets half the maximum; faster gets more;
every correct answer gets at least 1 and every wrong one 0.
"""

from __future__ import annotations

import os
import secrets
from typing import Annotated, Any, ClassVar

import numpy as np
import torch

from protocol.schema import B32, U32, Bytes, Message, message
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

PRIME = (1 << 24) - 3  # largest prime below 2^24
ROUNDS = 2
ENTRY_MIN, ENTRY_MAX = -8, 7
MAX_TERM = 64  # largest |a * b|
MAX_DIM = 4096  # m, n
MAX_INNER = 65536  # k: keeps 128 k < PRIME and 64 k < 2^24 (exact float32)
MAX_OUTPUT = (1 << 18) - (1 << 10)  # m * n: an int32 product fits the 1 MiB payload cap
MAX_INPUT = 1 << 25  # m * k + k * n: bounds the memory a query can make a miner allocate

DEFAULT_SHAPE = (256, 4096, 256)
DEFAULT_RATE_GFLOPS = 50
CLI_INNER = 256  # a paying client's default k: quick to serve, and still a real product
CLI_USAGE = "--rows R --cols C [--inner K] [--seed S], or --input FILE.npy (a 2-D array shaped like the product)"
SHOWN_ENTRIES = 256  # products up to this size are printed whole


@message
class ComputeQuery(Message):
    """Multiply the matrices expanded from `seed`, of shapes (m, k) and (k, n)."""

    seed: Annotated[bytes, B32]
    m: Annotated[int, U32]
    k: Annotated[int, U32]
    n: Annotated[int, U32]


@message
class ComputeAnswer(Message):
    """The product as m * n little-endian int32, row-major."""

    MAX_SIZE: ClassVar[int] = MAX_OUTPUT * 4 + 64
    product: Annotated[bytes, Bytes(max_size=MAX_OUTPUT * 4)]


def check_shape(m: int, k: int, n: int) -> None:
    """Refuse shapes outside the caps, with a typed error naming the limit."""
    if not (1 <= m <= MAX_DIM and 1 <= n <= MAX_DIM):
        raise QueryRejected(f"compute: m={m}, n={n} must be in [1, {MAX_DIM}]")
    if not 1 <= k <= MAX_INNER:
        raise QueryRejected(f"compute: k={k} must be in [1, {MAX_INNER}]")
    if m * n > MAX_OUTPUT:
        raise QueryRejected(f"compute: product of {m * n} entries exceeds {MAX_OUTPUT}")
    if m * k + k * n > MAX_INPUT:
        raise QueryRejected(f"compute: inputs of {m * k + k * n} entries exceed {MAX_INPUT}")


def _cli_shape(rows: int, inner: int, cols: int) -> None:
    """`check_shape` in the client's option names."""
    for flag, value, hi in (("--rows", rows, MAX_DIM), ("--cols", cols, MAX_DIM), ("--inner", inner, MAX_INNER)):
        if not 1 <= value <= hi:
            raise CliInputError(f"compute: {flag} {value} must be in [1, {hi}]")
    if rows * cols > MAX_OUTPUT:
        raise CliInputError(f"compute: --rows x --cols = {rows * cols} entries exceeds {MAX_OUTPUT}")
    if rows * inner + inner * cols > MAX_INPUT:
        raise CliInputError(f"compute: (--rows + --cols) x --inner = {rows * inner + inner * cols} entries "
                            f"exceeds {MAX_INPUT}")


def _npy_shape(given: CliInput) -> tuple[int, int]:
    """The (rows, cols) of a 2-D .npy array; its values are not sent (a query names seeded matrices)."""
    path = given.file
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":
            raise CliInputError(f"compute: --input {path} is not a .npy file (save one with numpy.save)")
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # reads the header, not the data
    except OSError as exc:
        raise CliInputError(f"compute: cannot read --input {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # object arrays, a corrupt header
        raise CliInputError(f"compute: --input {path} is not a plain numeric .npy array: {exc}") from None
    if len(shape) != 2:
        raise CliInputError(f"compute: --input {path} holds a {len(shape)}-D array; use a 2-D one (rows x cols)")
    return int(shape[0]), int(shape[1])


def _nibbles(seed: bytes, count: int) -> np.ndarray:
    """`count` values in [-8, 7] from PCG64 raw output (a stream numpy keeps stable across versions)."""
    words = np.random.PCG64(int.from_bytes(seed, "big")).random_raw((count + 15) // 16)
    octets = words.astype("<u8", copy=False).view(np.uint8)
    out = np.empty(octets.size * 2, dtype=np.int8)
    np.bitwise_and(octets, 15, out=out[0::2], casting="unsafe")
    np.right_shift(octets, 4, out=out[1::2], casting="unsafe")
    out -= 8
    return out[:count]


def matrices(query: ComputeQuery) -> tuple[np.ndarray, np.ndarray]:
    """The int8 matrices A (m x k) and B (k x n) a query stands for; identical on every machine."""
    check_shape(query.m, query.k, query.n)
    a = _nibbles(derive(query.seed, "compute/A"), query.m * query.k).reshape(query.m, query.k)
    b = _nibbles(derive(query.seed, "compute/B"), query.k * query.n).reshape(query.k, query.n)
    return a, b


def product_from_bytes(answer: ComputeAnswer, m: int, n: int) -> np.ndarray:
    if len(answer.product) != m * n * 4:
        raise AnswerRejected(f"compute: product of {len(answer.product)} bytes, expected {m * n * 4} ({m}x{n} int32)")
    return np.frombuffer(answer.product, dtype="<i4").reshape(m, n)


def freivalds(a: np.ndarray, b: np.ndarray, c: np.ndarray, secret: bytes, rounds: int = ROUNDS) -> bool:
    """True iff C r == A (B r) (mod PRIME) for `rounds` random vectors drawn from `secret`."""
    k = a.shape[1]
    if int(np.abs(c, dtype=np.int64).max(initial=0)) > MAX_TERM * k:
        return False  # outside the range every true entry lies in; also what makes the mod-p test sound
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(secret, "big")))
    r = rng.integers(0, PRIME, size=(c.shape[1], rounds), dtype=np.int64)
    # A and B sides in float64 on torch's CPU BLAS (its thread count is the caller's torch.set_num_threads):
    # every value is an integer of magnitude < 2^43 < 2^53, so the products and the floor-mod are exact.
    rt = torch.from_numpy(r).to(torch.float64)
    br = torch.remainder(torch.from_numpy(b).to(torch.float64) @ rt, PRIME)
    right = torch.remainder(torch.from_numpy(a).to(torch.float64) @ br, PRIME).to(torch.int64).numpy()
    left = (c.astype(np.int64) @ r) % PRIME  # |C r| < 2^58: needs int64, but C is only m x n
    return bool(np.array_equal(left, right))


class ComputeMiner:
    """Multiplies on its device in float32 (exact for these matrices, see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def prepare(self) -> None:
        """Warm the device's matmul kernels so the first timed answer is not a cold start."""
        x = torch.ones((64, 64), device=self.device)
        (x @ x).sum().item()

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        at = torch.from_numpy(a).to(self.device, dtype=torch.float32)
        bt = torch.from_numpy(b).to(self.device, dtype=torch.float32)
        return (at @ bt).to(torch.int32).cpu().numpy()

    def answer(self, query: ComputeQuery) -> ComputeAnswer:
        a, b = matrices(query)
        return ComputeAnswer(self.multiply(a, b).astype("<i4", copy=False).tobytes())


class ComputeTask(Task[ComputeQuery, ComputeAnswer]):
    """Verified matmul. `secret` seeds the validator's Freivalds vectors; keep it private."""

    name: ClassVar[str] = "compute"
    Query = ComputeQuery
    Answer = ComputeAnswer
    CONFIG: ClassVar[frozenset[str]] = frozenset({"m", "k", "n", "rate_gflops"})

    def __init__(self, config: Config | None = None, *, secret: bytes | None = None) -> None:
        check_config_keys(config, self.CONFIG)
        self.m = config_int(config, "m", DEFAULT_SHAPE[0], 1, MAX_DIM)
        self.k = config_int(config, "k", DEFAULT_SHAPE[1], 1, MAX_INNER)
        self.n = config_int(config, "n", DEFAULT_SHAPE[2], 1, MAX_DIM)
        self.rate_gflops = config_int(config, "rate_gflops", DEFAULT_RATE_GFLOPS, 1, 10**9)
        try:
            check_shape(self.m, self.k, self.n)
        except QueryRejected as exc:
            raise ConfigError(str(exc)) from None
        if secret is not None and (type(secret) is not bytes or len(secret) < 16):
            raise ConfigError("compute: the verification secret must be at least 16 bytes")
        self.secret = secret if secret is not None else os.urandom(32)

    def challenge(self, seed: bytes) -> Challenge[ComputeQuery]:
        query = ComputeQuery(derive(check_seed(seed), "compute/matrices"), self.m, self.k, self.n)
        return Challenge(self.name, seed, query, derive(self.secret + seed, "compute/freivalds"))

    def check_query(self, query: ComputeQuery) -> None:
        check_shape(query.m, query.k, query.n)

    def parse_cli_input(self, given: CliInput) -> bytes:
        """--rows/--cols (or a 2-D .npy array's shape), --inner (default 256), --seed (default random): the
        product of the seeded matrices A (rows x inner) and B (inner x cols), as a validator would ask."""
        given.only(self.name, frozenset({"file", "rows", "cols", "inner", "seed"}), CLI_USAGE)
        if given.file is not None:
            if given.rows is not None or given.cols is not None:
                raise CliInputError("compute: give --input FILE.npy or --rows/--cols, not both")
            rows, cols = _npy_shape(given)
        elif given.rows is None or given.cols is None:
            raise CliInputError(f"compute: give {CLI_USAGE}")
        else:
            rows, cols = given.rows, given.cols
        inner = CLI_INNER if given.inner is None else given.inner
        _cli_shape(rows, inner, cols)
        if given.seed is None:
            seed = secrets.token_bytes(32)
        elif 0 <= given.seed < 1 << 256:
            seed = given.seed.to_bytes(32, "big")
        else:
            raise CliInputError(f"compute: --seed {given.seed} must be in [0, 2^256)")
        return ComputeQuery(seed, rows, inner, cols).to_bytes()

    def describe_answer(self, payload: bytes, query: bytes | None = None) -> dict[str, Any]:
        """The product's shape, whether it passes Freivalds' check (with a fresh secret of the client's), its
        sum and, when small, every entry."""
        answer = self.decode_answer(payload)
        if query is None:
            return {"product_bytes": len(answer.product)}
        q = self.decode_query(query)
        out: dict[str, Any] = {"rows": q.m, "inner": q.k, "cols": q.n, "seed": q.seed.hex()}
        try:
            c = product_from_bytes(answer, q.m, q.n)
        except AnswerRejected as exc:
            return {**out, "verified": False, "error": str(exc)}
        a, b = matrices(q)
        out.update(verified=freivalds(a, b, c, secrets.token_bytes(32)), sum=int(c.sum(dtype=np.int64)))
        if c.size <= SHOWN_ENTRIES:
            out["product"] = c.tolist()
        return out

    def format_answer(self, payload: bytes, query: bytes | None = None) -> str:
        d = self.describe_answer(payload, query)
        if "rows" not in d:
            return f"product of {d['product_bytes']} bytes"
        head = (f"C = A @ B: {d['rows']} x {d['cols']} int32 (inner {d['inner']}, seed {d['seed'][:16]}…), "
                + ("verified by Freivalds' check" if d["verified"] else f"WRONG: {d.get('error', 'fails Freivalds')}"))
        if "product" not in d:
            return head + (f"\nsum of entries {d['sum']} (--out FILE keeps every entry)" if "sum" in d else "")
        return head + "\n" + np.array2string(np.array(d["product"]), max_line_width=120)

    def load_miner(self, device: torch.device, config: Config | None = None) -> ComputeMiner:
        check_config_keys(config, frozenset())
        return ComputeMiner(device)

    def flops(self, query: ComputeQuery) -> int:
        return 2 * query.m * query.k * query.n

    def verify(self, challenge: Challenge[ComputeQuery], answer: ComputeAnswer) -> bool:
        """Freivalds' check of `answer`; raises `AnswerRejected` for a product of the wrong size."""
        q = challenge.query
        c = product_from_bytes(answer, q.m, q.n)
        a, b = matrices(q)
        return freivalds(a, b, c, challenge.expected)

    def score(self, challenge: Challenge[ComputeQuery], answer: ComputeAnswer, latency_ms: int = 0) -> int:
        if type(latency_ms) is not int or latency_ms < 0:
            raise ConfigError(f"compute: latency_ms must be a non-negative int, got {latency_ms!r}")
        if not self.verify(challenge, answer):
            return 0
        f = self.flops(challenge.query)
        return max(1, MAX_SCORE * f // (f + latency_ms * self.rate_gflops * 10**6))
