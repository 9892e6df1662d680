"""The harness that judges each input, and the engines that feed it (random, hypothesis, atheris).

Judging: an input is ACCEPTED (the target returned), REJECTED (a typed error: `ProtocolError` or the
target's own typed classes) or a finding: CRASH (any other exception, including a failed oracle),
HANG (past the per-input time budget) or MEMORY (peak RSS grew past the cap while it ran).

Why these mechanisms: a hang must be caught while it happens, so in the main thread an ITIMER_REAL
alarm raises `Hang` (a BaseException, so no `except Exception` in the target swallows it) inside
the stuck Python code and its traceback says where; a slow C call that the alarm cannot interrupt
is still caught afterwards by its elapsed time, and a C call stuck for good is ended by
faulthandler's watchdog (stacks dumped, process exits) at about 10x the budget. Peak RSS
(getrusage, one syscall) is read around each input because tracemalloc would halve the speed.

Findings are saved by content hash (target + input + traceback) as `<id>.json` (self-contained:
the input as hex, the traceback, how it was made) and `<id>.bin` (the raw input, for other tools).
"""

from __future__ import annotations

import faulthandler
import gc
import hashlib
import json
import os
import random
import re
import resource
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.errors import NodeError
from node.fuzz.mutate import Mutator, encode_loose, random_cbor
from node.fuzz.mutate import resign as resign_obj
from node.fuzz.targets import Target, extra_samples
from protocol import codec
from protocol.errors import DecodeError, SchemaError
from protocol.messages import Signed
from protocol.schema import Message

DEFAULT_BUDGET_S = 1.0
DEFAULT_MEM_CAP_MB = 256
MAX_POOL = 512
MAX_SAVED_PER_SIGNATURE = 3
PROJECT_DIRS = ("protocol", "node", "p2pnet", "subnets")


class Hang(BaseException):
    """Raised by the alarm inside an input that ran past its time budget."""


class EngineUnavailable(NodeError):
    """The requested engine cannot run here (atheris not installed); the message says how to fix it."""


@dataclass
class Finding:
    target: str
    kind: str  # crash | hang | memory
    error: str  # the exception's type name
    message: str
    signature: str  # type + innermost project frame: groups the many inputs of one bug
    traceback: str
    data: bytes
    elapsed_ms: float
    rss_growth_mb: float
    engine: str = ""
    seed: int | None = None
    resign: bool = False

    @property
    def id(self) -> str:
        h = hashlib.sha256(b"\0".join([self.target.encode(), self.data, self.traceback.encode()]))
        return h.hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = self.data.hex()
        d["id"] = self.id
        d["size"] = len(self.data)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Finding:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["data"] = bytes.fromhex(d["data"])
        return cls(**fields)


@dataclass
class Outcome:
    status: str  # accepted | rejected | crash | hang | memory
    label: str  # the accepted label, or the rejection's type and message shape
    elapsed_s: float
    finding: Finding | None = None


@dataclass
class Stats:
    target: str
    engine: str
    runs: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: int = 0
    seconds: float = 0.0
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)  # signature -> summary
    labels: dict[str, int] = field(default_factory=dict)  # outcome label -> count
    slowest_ms: float = 0.0

    @property
    def inputs_per_s(self) -> float:
        return self.runs / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "engine": self.engine,
            "runs": self.runs,
            "crashes": self.crashes,
            "findings": list(self.findings.values()),
            "inputs_per_s": round(self.inputs_per_s, 1),
            "accepted": self.accepted,
            "rejected": self.rejected,
            "distinct_outcomes": len(self.labels),
            "seconds": round(self.seconds, 2),
            "slowest_ms": round(self.slowest_ms, 2),
        }


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{16,}|\d+")
_UNKNOWN = re.compile(r"(unknown field\(s\)|unknown kind).*")  # the names that follow are the mutant's
_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"|\btn[a-z2-7]{20,}")


def shape(exc: BaseException) -> str:
    """A rejection's type and the shape of its message (numbers and hex blanked, cut short): a new shape
    is a new behaviour, which is how the random engine decides what to keep in its pool."""
    text = _NUMBERS.sub("#", _QUOTED.sub("'…'", _UNKNOWN.sub(r"\1", str(exc))))
    return f"{type(exc).__name__}:{':'.join(text.split(':')[:2])[:56]}"


def _maxrss_mb() -> float:
    """Peak RSS since the last `_reset_peak` (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _reset_peak() -> None:
    # Without this, an input that grows memory below the process's earlier peak (say, from
    # importing torch before the run) would never show: Linux resets VmHWM on writing "5".
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _signature(exc: BaseException, kind: str) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = "?"
    for fr in reversed(frames):
        parts = Path(fr.filename).parts
        if any(d in parts for d in PROJECT_DIRS) and "fuzz" not in parts:
            where = f"{'/'.join(parts[-2:])}:{fr.lineno} {fr.name}"
            break
    else:
        if frames:
            fr = frames[-1]
            where = f"{Path(fr.filename).name}:{fr.lineno} {fr.name}"
    return f"{kind}:{type(exc).__name__}@{where}"


class Harness:
    """Runs one target on one input at a time and judges the outcome; saves findings when given a dir."""

    def __init__(
        self,
        target: Target,
        *,
        budget_s: float = DEFAULT_BUDGET_S,
        mem_cap_mb: float = DEFAULT_MEM_CAP_MB,
        findings_dir: Path | None = None,
        engine: str = "",
        seed: int | None = None,
        resign: bool = False,
        hard_watchdog: bool = True,
    ) -> None:
        self.target = target
        self.budget_s = budget_s
        self.mem_cap_mb = mem_cap_mb
        self.findings_dir = findings_dir
        self.stats = Stats(target.name, engine)
        self.engine = engine
        self.seed = seed
        self.resign = resign
        self.hard_watchdog = hard_watchdog
        self._armed = False
        self._watchdog_armed = -1e9
        self._saved: dict[str, int] = {}
        self._main = threading.current_thread() is threading.main_thread()
        self._old_handler: Any = None

    # The alarm: installed for the harness's lifetime, armed per input.
    def __enter__(self) -> Harness:
        if self._main:
            self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler or signal.SIG_DFL)
        if self.hard_watchdog:
            faulthandler.cancel_dump_traceback_later()

    def _watchdog(self) -> None:
        # Re-armed at most once a second: arming starts a thread (~65 us), more than most inputs cost.
        now = time.monotonic()
        if now - self._watchdog_armed < 1.0:
            return
        self._watchdog_armed = now
        try:  # to the real stderr: a captured sys.stderr (tests, CliRunner) has no file descriptor
            faulthandler.dump_traceback_later(self.budget_s * 10 + 6, exit=True, file=sys.__stderr__)
        except (ValueError, OSError, AttributeError):
            self.hard_watchdog = False

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self._armed:
            self._armed = False
            raise Hang(f"input ran past its {self.budget_s:g} s budget")

    def run_one(self, data: bytes) -> Outcome:
        target = self.target
        _reset_peak()
        rss0 = _maxrss_mb()
        if self.hard_watchdog:
            self._watchdog()
        if self._main:
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, self.budget_s)
        t0 = time.perf_counter()
        exc: BaseException | None = None
        status = "accepted"
        label = ""
        try:
            label = target.check(data)
            self._armed = False
        except Hang as e:
            status, exc = "hang", e
        except target.typed as e:
            self._armed = False
            status, label = "rejected", shape(e)
        except MemoryError as e:
            self._armed = False
            status, exc = "memory", e
        except Exception as e:  # noqa: BLE001 - anything untyped is exactly what a fuzzer looks for
            self._armed = False
            status, exc = "crash", e
        finally:
            self._armed = False
            if self._main:
                signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - t0
        growth = _maxrss_mb() - rss0
        if status in ("accepted", "rejected"):
            if elapsed > self.budget_s:
                status, exc = "hang", Hang(f"input took {elapsed:.3f} s (budget {self.budget_s:g} s) in code "
                                           "the alarm could not interrupt")
            elif growth > self.mem_cap_mb:
                status, exc = "memory", MemoryError(f"peak RSS grew {growth:.0f} MiB (cap {self.mem_cap_mb:g} MiB)")
        st = self.stats
        st.runs += 1
        st.slowest_ms = max(st.slowest_ms, elapsed * 1000)
        if status == "accepted":
            st.accepted += 1
            label = f"ok:{label}"
        elif status == "rejected":
            st.rejected += 1
        st.labels[label or status] = st.labels.get(label or status, 0) + 1
        outcome = Outcome(status, label or status, elapsed)
        if exc is not None:
            outcome.finding = self._finding(status, exc, data, elapsed, growth)
        return outcome

    def _finding(self, kind: str, exc: BaseException, data: bytes, elapsed: float, growth: float) -> Finding:
        tb = "".join(traceback.format_exception(exc))
        f = Finding(self.target.name, kind, type(exc).__name__, str(exc)[:500], _signature(exc, kind), tb, data,
                    round(elapsed * 1000, 3), round(growth, 1), self.engine, self.seed, self.resign)
        st = self.stats
        st.crashes += 1
        entry = st.findings.setdefault(
            f.signature, {"signature": f.signature, "kind": kind, "error": f.error, "message": f.message[:200],
                          "count": 0, "files": []}
        )
        entry["count"] += 1
        if self.findings_dir is not None and self._saved.get(f.signature, 0) < MAX_SAVED_PER_SIGNATURE:
            self._saved[f.signature] = self._saved.get(f.signature, 0) + 1
            entry["files"].append(str(save_finding(self.findings_dir, f)))
        return f


def save_finding(directory: Path, f: Finding) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{f.id}.json"
    path.write_text(json.dumps(f.to_json(), indent=2))
    (directory / f"{f.id}.bin").write_bytes(f.data)
    return path


# --- engines --------------------------------------------------------------------------------------


@dataclass
class Budget:
    """Stop after `runs` inputs or `seconds` of wall time, whichever is given (runs wins if both)."""

    runs: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.runs is None and self.seconds is None:
            self.seconds = 10.0
        self.restart()

    def restart(self) -> None:
        """Start the clock now: engines call this once their set-up (fixtures, strategies) is done."""
        self.start = time.monotonic()

    def done(self, runs: int) -> bool:
        if self.runs is not None:
            return runs >= self.runs
        return time.monotonic() - self.start >= (self.seconds or 0)

    def remaining_runs(self, runs: int, batch: int) -> int:
        return batch if self.runs is None else max(0, min(batch, self.runs - runs))


OnNew = Callable[[bytes, Outcome], None]


def depth(out: Outcome) -> int:
    """How far an input got: accepted 4, a rule after decoding 3, the schema 2, the codec 1, a finding 5."""
    if out.finding is not None:
        return 5
    if out.status == "accepted":
        return 4
    name = out.label.split(":", 1)[0]
    if name in _DECODE_ERRORS:
        return 1
    if name in _SCHEMA_ERRORS:
        return 2
    return 3


def _names(base: type) -> frozenset[str]:
    out, todo = set(), [base]
    while todo:
        c = todo.pop()
        out.add(c.__name__)
        todo += c.__subclasses__()
    return frozenset(out)


def _error_sets() -> tuple[frozenset[str], frozenset[str]]:
    schema = _names(SchemaError)
    return _names(DecodeError) - schema, schema


_DECODE_ERRORS, _SCHEMA_ERRORS = _error_sets()


def run_random(harness: Harness, seeds: Sequence[bytes], budget: Budget, *, seed: int = 0, resign: bool = False,
               on_new: OnNew | None = None) -> Stats:
    """The pure-Python engine: mutate from a pool that starts as the seeds and keeps every input that
    produced an outcome not seen before (a new rejection reason is a new code path, roughly). Parents are
    drawn weighted by how deep their outcome went, so the pool does not drift into codec-level junk."""
    target = harness.target
    rng = random.Random(seed)
    mut = Mutator(target.cls, rng, item_cls=target.item_cls, resign=resign)
    initial = list(dict.fromkeys([*seeds, *extra_samples(target)]))
    pool: list[bytes] = []
    weights: list[int] = []
    seen: set[str] = set()
    t0 = time.monotonic()
    st = harness.stats
    queue = list(reversed(initial))  # every seed runs once as it is
    budget.restart()
    while not budget.done(st.runs):
        if queue:
            data = queue.pop()
        else:
            r = rng.random()
            if r < 0.03:
                data = rng.randbytes(rng.randint(0, 64))
            elif r < 0.06:
                data = encode_loose(random_cbor(rng), rng, p=0.2)
            else:
                parent = rng.choices(pool, weights)[0] if pool else rng.choice(initial)
                data = mut.mutate(parent, pool or initial)
        out = harness.run_one(data)
        if out.label not in seen or data in initial:
            seen.add(out.label)
            w = depth(out) ** 2
            if out.finding is None:
                if len(pool) >= MAX_POOL:
                    i = rng.randrange(len(pool))
                    pool[i], weights[i] = data, w
                else:
                    pool.append(data)
                    weights.append(w * (3 if data in initial else 1))
            if on_new is not None:
                on_new(data, out)
    st.seconds = time.monotonic() - t0
    return st


def run_hypothesis(harness: Harness, seeds: Sequence[bytes], budget: Budget, *, seed: int = 0,
                   resign: bool = False, on_new: OnNew | None = None) -> Stats:
    """Hypothesis generates valid messages from protocol/testing/wire_strategies.py (every field of the schema) and
    our mutator perturbs them; the property never fails, so the run covers the whole budget."""
    try:  # lazy: hypothesis is a test extra, optional at run time (the random engine needs nothing)
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hseed
        from hypothesis import strategies as st

        from protocol.testing.wire_strategies import cbor_values, message_strategy
    except ImportError as exc:
        raise EngineUnavailable(
            f"the hypothesis engine needs hypothesis and protocol/testing/wire_strategies.py ({exc}); "
            "install the test extra: pip install -e '.[test]'"
        ) from exc
    target = harness.target

    def to_bytes(m: Message) -> bytes:
        if resign and isinstance(m, Signed):
            obj = codec.decode(m.to_bytes())
            resign_obj(type(m), obj)
            return codec.encode(obj)
        return m.to_bytes()

    if target.item_cls is not None:
        valid = st.lists(message_strategy(target.item_cls).map(to_bytes), max_size=4).map(codec.encode)
    elif target.cls is not None:
        valid = message_strategy(target.cls).map(to_bytes)
    else:
        valid = cbor_values().map(codec.encode)
    pool = list(seeds)

    def mutated(pair: tuple[bytes, random.Random]) -> bytes:
        data, rnd = pair
        m = Mutator(target.cls, rnd, item_cls=target.item_cls, resign=resign)
        return m.mutate(data, pool)

    strategy = st.one_of(
        valid,
        st.tuples(valid, st.randoms(use_true_random=False)).map(mutated),
        st.tuples(st.sampled_from(pool), st.randoms(use_true_random=False)).map(mutated),
        st.binary(max_size=128),
    )
    seen: set[str] = set()
    t0 = time.monotonic()
    stats = harness.stats
    batch_no = 0
    budget.restart()
    while not budget.done(stats.runs):
        n = budget.remaining_runs(stats.runs, 50)  # small batches: a time budget is checked between them
        if n <= 0:
            break

        @hseed(seed * 1_000_003 + batch_no)
        @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(strategy)
        def prop(data: bytes) -> None:
            if budget.done(stats.runs):
                return
            out = harness.run_one(data)
            if out.label not in seen:
                seen.add(out.label)
                if on_new is not None:
                    on_new(data, out)

        prop()
        batch_no += 1
    stats.seconds = time.monotonic() - t0
    return stats


# Coverage is only worth its cost in the code under test: instrument_all() would patch every loaded
# function (26k here, over three minutes) including libp2p, numpy and the CLI.
INSTRUMENTED = ("protocol", "protocol.consensus.core", "node.service", "node.chain", "node.mempool", "p2pnet.reqresp",
                "p2pnet.handshake")


def instrument_project(atheris: Any) -> int:
    count = 0
    for obj in gc.get_objects():
        if type(obj) is not types.FunctionType:
            continue
        mod = getattr(obj, "__module__", None) or ""
        if not any(mod == p or mod.startswith(p + ".") for p in INSTRUMENTED):
            continue
        try:
            atheris.instrument_func(obj)
            count += 1
        except Exception:  # noqa: BLE001 - a function atheris cannot patch just runs uninstrumented
            continue
    return count


ATHERIS_HELP = ("the atheris engine needs atheris (coverage-guided, libFuzzer): pip install 'tensornet[fuzz]' "
                "(or: pip install 'atheris>=2.3'); the random and hypothesis engines need nothing extra")


def atheris_available() -> bool:
    try:  # lazy: atheris is an optional extra (tensornet[fuzz])
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris(harness: Harness, seeds: Sequence[bytes], budget: Budget, *, seed: int = 0, resign: bool = False,
                on_new: OnNew | None = None, on_done: Callable[[Stats], None] | None = None,
                corpus_dir: Path | None = None) -> Stats:
    """Coverage-guided fuzzing with libFuzzer through atheris, with our structure-aware mutator as its
    custom mutator. libFuzzer never returns, so the harness stops it itself: when the budget is spent it
    calls `on_done(stats)` (which prints the summary) and ends the process."""
    try:  # lazy: atheris is an optional extra (tensornet[fuzz])
        import atheris
    except ImportError as exc:
        raise EngineUnavailable(ATHERIS_HELP) from exc

    target = harness.target
    pool = list(seeds)
    seen: set[str] = set()
    stats = harness.stats

    def finish() -> None:
        stats.seconds = time.monotonic() - budget.start
        if on_done is not None:
            on_done(stats)
        sys.stdout.flush()
        os._exit(1 if stats.crashes else 0)

    def test_one(data: bytes) -> None:
        if budget.done(stats.runs):
            finish()
        out = harness.run_one(bytes(data))
        if out.label not in seen:
            seen.add(out.label)
            if on_new is not None:
                on_new(bytes(data), out)

    def custom_mutator(data: bytes, max_size: int, mseed: int) -> bytes:
        rnd = random.Random(mseed)
        if not data:
            data = rnd.choice(pool)
        return Mutator(target.cls, rnd, item_cls=target.item_cls, resign=resign).mutate(bytes(data), pool)[:max_size]

    args = [sys.argv[0], f"-seed={seed or 1}", "-max_len=1048576", "-rss_limit_mb=0"]
    if corpus_dir is not None:
        corpus_dir.mkdir(parents=True, exist_ok=True)
        for s in pool:
            (corpus_dir / hashlib.sha256(s).hexdigest()[:20]).write_bytes(s)
        args.append(str(corpus_dir))
    n = instrument_project(atheris)
    sys.stderr.write(f"atheris: coverage instrumentation on {n} functions of {', '.join(INSTRUMENTED)}\n")
    budget.restart()
    atheris.Setup(args, test_one, custom_mutator=custom_mutator)
    atheris.Fuzz()
    finish()  # pragma: no cover - Fuzz() does not return
    return stats


ENGINES = ("random", "hypothesis", "atheris")
