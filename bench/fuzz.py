"""Fuzzing throughput: inputs per second for each target, against raw codec.decode of the same inputs.

`python -m bench.fuzz --json` prints one JSON object. For each target it first generates the mutants
(random engine, fixed seed; generation is timed separately), then times the harness on them (the
target's checks plus the per-input alarm, RSS read and watchdog), and, as the baseline, times bare
`protocol.codec.decode` on the very same bytes in the same run: the ratio says how much of a fuzz
input's cost is the codec and how much the validation behind it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from typing import Any

from node.fuzz.engines import Harness
from node.fuzz.mutate import Mutator
from node.fuzz.targets import get, registry
from protocol import codec
from protocol.errors import ProtocolError


def _time(fn: Any, items: list[bytes]) -> float:
    t0 = time.perf_counter()
    for data in items:
        fn(data)
    return time.perf_counter() - t0


def _decode(data: bytes) -> None:
    try:
        codec.decode(data, max_size=1 << 27)
    except ProtocolError:
        pass


def bench_target(name: str, n: int, resign: bool, seed: int = 1) -> dict[str, Any]:
    t = get(name)
    seeds = t.seeds()
    for s in seeds:  # warm the fixtures and lazy imports before timing
        t.check(s)
    rng = random.Random(seed)
    mut = Mutator(t.cls, rng, item_cls=t.item_cls, resign=resign)
    g0 = time.perf_counter()
    inputs = [mut.mutate(rng.choice(seeds), seeds) for _ in range(n)]
    gen = time.perf_counter() - g0
    with Harness(t, engine="bench") as h:
        run = _time(h.run_one, inputs)
        stats = h.stats
    base = _time(_decode, inputs)
    return {
        "target": name,
        "inputs": n,
        "resign": resign,
        "inputs_per_s": round(n / run, 1),
        "mutants_per_s": round(n / gen, 1),
        "codec_decode_per_s": round(n / base, 1),
        "slowdown_vs_decode": round(run / base, 1),
        "accepted": stats.accepted,
        "crashes": stats.crashes,
        "mean_input_bytes": round(sum(map(len, inputs)) / n),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--inputs", type=int, default=2000, help="inputs per target (state and dag: a fifth of it)")
    ap.add_argument("--targets", default="", help="comma-separated names (default: all)")
    ap.add_argument("--sign-with-test-key", action="store_true", help="re-sign mutants")
    args = ap.parse_args(argv)
    names = [n for n in args.targets.split(",") if n] or list(registry())
    slow = {"state": 5, "dag": 2, "blocks_response": 2, "fetch_blocks": 2}
    rows = [bench_target(n, max(50, args.inputs // slow.get(n, 1)), args.sign_with_test_key) for n in names]
    out = {
        "bench": "fuzz",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "engine": "random",
        "targets": rows,
    }
    if args.json:
        print(json.dumps(out))
    else:
        for r in rows:
            print(f"{r['target']:<22} {r['inputs_per_s']:>9.1f}/s  (codec.decode {r['codec_decode_per_s']:>9.1f}/s, "
                  f"x{r['slowdown_vs_decode']}), {r['accepted']} accepted, {r['crashes']} crashes")


if __name__ == "__main__":
    main()
