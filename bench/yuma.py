"""Benchmark one Yuma Consensus epoch.

``python -m bench.yuma --json`` prints one JSON line per size: the median and minimum wall time of
``protocol.economics.yuma.epoch`` over several runs, and two baselines from the same run, interleaved with it: the epoch
as it was before the speed-up (``protocol/testing/yuma_reference.py``, bit-identical outputs; ``baseline_reference_*``)
and a float64 numpy sketch of the same epoch's dense linear algebra (normalise, median-free clip at a fixed
consensus, ranks, EMA bonds, dividends; ``baseline_float_numpy_ms``).  Inputs are random but seeded:
dense-ish weights (each validator weights ~75% of the uids), Yuma 3 with liquid alpha.  The machine is
shared, so CPU times are printed too, and ``load_avg_1m`` says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import numpy as np

from protocol.economics.yuma import EpochInputs, EpochParams, epoch
from protocol.testing import yuma_reference

SIZES = "256x64,4096x256"  # uids x validators


def make_inputs(n: int, validators: int, seed: int = 7, yuma3: bool = True, liquid: bool = True) -> EpochInputs:
    rnd = random.Random(seed)
    stakes = [rnd.randint(1_000, 10**12) if i < validators else rnd.randint(0, 1_000) for i in range(n)]
    weights: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    bonds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i in range(validators):
        cols = sorted(rnd.sample(range(n), (3 * n) // 4))
        weights[i] = [(j, rnd.randint(0, 65535)) for j in cols]
        bonds[i] = [(j, rnd.randint(0, 65535)) for j in sorted(rnd.sample(range(n), n // 2))]
    return EpochInputs(
        block=10_000,
        stakes=stakes,
        weights=weights,
        bonds=bonds,
        validator_permits=[i < validators for i in range(n)],
        last_update=[9_990 if i < validators else 0 for i in range(n)],
        block_at_registration=[0] * n,
        emission=1_000_000_000_000,
        params=EpochParams(max_allowed_validators=validators, yuma3=yuma3, liquid_alpha_enabled=liquid),
    )


def float_baseline(inp: EpochInputs, validators: int) -> float:
    """One pass of the epoch's dense float64 algebra on the same shape (not bit-exact: a yardstick)."""
    n = len(inp.stakes)
    t0 = time.perf_counter()
    w = np.zeros((validators, n))
    for i in range(validators):
        row = np.asarray(inp.weights[i], dtype=np.int64)  # type: ignore[index]
        w[i, row[:, 0]] = row[:, 1]
    b = np.zeros((validators, n))
    for i in range(validators):
        row = np.asarray(inp.bonds[i], dtype=np.int64)  # type: ignore[index]
        b[i, row[:, 0]] = row[:, 1] / 65535
    s = np.asarray(inp.stakes[:validators], dtype=np.float64)
    s /= s.sum()
    w /= w.sum(axis=1, keepdims=True)
    order = np.argsort(w, axis=0)
    cum = np.cumsum(s[order], axis=0)
    first = (cum > 0.5).argmax(axis=0)
    c = np.take_along_axis(w, order, axis=0)[first, np.arange(n)]
    wc = np.minimum(w, c)
    r = s @ wc
    inc = r / r.sum()
    alpha = 0.1 + 0.2 / (1 + np.exp(-10 * (np.clip(w - c, 0, 1) - 0.5)))
    ema = np.minimum((1 - alpha) * b + alpha * w, 1)
    norm = ema / np.where(ema.sum(axis=0) == 0, 1, ema.sum(axis=0))
    d = (norm * inc).sum(axis=1) * s
    _ = d / d.sum()
    return (time.perf_counter() - t0) * 1000


def _timed(fn: object, inp: EpochInputs) -> tuple[float, float]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn(inp)  # type: ignore[operator]
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000


def bench(n: int, validators: int, runs: int, reference: bool = True) -> dict[str, object]:
    inp = make_inputs(n, validators)
    if reference and epoch(inp) != yuma_reference.epoch(inp):  # also the warm-up
        raise AssertionError("the fast epoch and the reference disagree")
    times, cpu, ref, ref_cpu, base = [], [], [], [], []
    for _ in range(runs):
        wall, c = _timed(epoch, inp)
        times.append(wall)
        cpu.append(c)
        if reference:
            wall, c = _timed(yuma_reference.epoch, inp)
            ref.append(wall)
            ref_cpu.append(c)
        base.append(float_baseline(inp, validators))
    goal = 20.0 if n <= 256 else 1000.0
    med = statistics.median(times)
    out: dict[str, object] = {
        "bench": "yuma_epoch",
        "uids": n,
        "validators": validators,
        "runs": runs,
        "median_ms": round(med, 2),
        "min_ms": round(min(times), 2),
        "median_cpu_ms": round(statistics.median(cpu), 2),
        "min_cpu_ms": round(min(cpu), 2),
    }
    if reference:
        out |= {
            "baseline_reference_median_ms": round(statistics.median(ref), 2),
            "baseline_reference_min_ms": round(min(ref), 2),
            "baseline_reference_median_cpu_ms": round(statistics.median(ref_cpu), 2),
            "speedup_median": round(statistics.median(ref) / med, 2),
        }
    return out | {
        "baseline_float_numpy_ms": round(statistics.median(base), 2),
        "goal_ms": goal,
        "meets_goal": med <= goal,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """`256x64,4096x256` -> [(256, 64), (4096, 256)]: uids x validators, at least one validator per size."""
    sizes = []
    for item in text.split(","):
        n, _, v = item.partition("x")
        if not (n.isdigit() and v.isdigit() and 1 <= int(v) <= int(n)):
            raise argparse.ArgumentTypeError(f"size {item!r}: want UIDSxVALIDATORS with 1 <= VALIDATORS <= UIDS")
        sizes.append((int(n), int(v)))
    return sizes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="one JSON line per size (the default output)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-reference", action="store_true", help="skip the pre-optimisation baseline")
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes(SIZES), help=f"UIDSxVALIDATORS,... ({SIZES})")
    args = ap.parse_args(argv)
    for n, v in args.sizes:
        res = bench(n, v, args.runs if n <= 256 else max(3, args.runs // 2), reference=not args.no_reference)
        print(json.dumps(res) if args.json else f"{n} uids x {v} validators: {res['median_ms']} ms ({res})")


if __name__ == "__main__":
    main()
