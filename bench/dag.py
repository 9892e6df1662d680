"""Per-block cost of the consensus core: DagState.insert + Committer.try_commit on a full synthetic DAG.

    python -m bench.dag --json

Every authority proposes in every round and cites every block of the previous round, as in a healthy
network; try_commit runs after every block as a driver would. No signatures or decoding: add those
from the codec/crypto benchmarks. The baseline is BLAKE2b-hashing each block's parent refs in the same
run, so figures from different machines can be compared as a ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time

from protocol.consensus.block import DagRef, genesis_digest
from protocol.consensus.committee import Committee
from protocol.consensus.committer import Committer
from protocol.consensus.dag_state import DagState
from protocol.testing.dag_dsl import TestBlock, make_block

SEED = b"bench-dag"


def build(n: int, rounds: int) -> tuple[Committee, list[TestBlock]]:
    committee = Committee.for_test([1] * n)
    prev = [DagRef(0, a, genesis_digest(SEED, a)) for a in range(n)]
    blocks: list[TestBlock] = []
    for r in range(1, rounds + 1):
        here = []
        for a in range(n):
            b = make_block(r, a, [prev[a]] + prev[:a] + prev[a + 1:])
            blocks.append(b)
            here.append(b.ref)
        prev = here
    return committee, blocks


def run_core(committee: Committee, blocks: list[TestBlock]) -> tuple[float, int, float]:
    """Seconds for insert + try_commit of every block, commits made, seconds for insert alone."""
    dag = DagState(committee, SEED)
    committer = Committer(dag)
    t0 = time.perf_counter()
    commits = 0
    for b in blocks:
        dag.insert(b)
        commits += len(committer.try_commit())
    total = time.perf_counter() - t0
    dag2 = DagState(committee, SEED)
    t0 = time.perf_counter()
    for b in blocks:
        dag2.insert(b)
    insert_only = time.perf_counter() - t0
    return total, commits, insert_only


def run_baseline(blocks: list[TestBlock]) -> float:
    t0 = time.perf_counter()
    for b in blocks:
        h = hashlib.blake2b(digest_size=32)
        for p in b.parents:
            h.update(p.round.to_bytes(8, "big") + p.author.to_bytes(4, "big") + p.digest)
        h.digest()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    ap.add_argument("--blocks", type=int, default=3000, help="about this many blocks per committee size")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--sizes", default="4,16,64")
    args = ap.parse_args()
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        rounds = max(10, args.blocks // n)
        committee, blocks = build(n, rounds)
        best = None
        for _ in range(args.repeat):
            total, commits, insert_only = run_core(committee, blocks)
            base = run_baseline(blocks)
            if best is None or total < best[0]:
                best = (total, commits, insert_only, base)
        assert best is not None
        total, commits, insert_only, base = best
        results.append({
            "n": n,
            "rounds": rounds,
            "blocks": len(blocks),
            "commits": commits,
            "us_per_block": round(total / len(blocks) * 1e6, 2),
            "insert_us_per_block": round(insert_only / len(blocks) * 1e6, 2),
            "try_commit_us_per_block": round((total - insert_only) / len(blocks) * 1e6, 2),
            "baseline_blake2b_parents_us_per_block": round(base / len(blocks) * 1e6, 2),
            "ratio_to_baseline": round(total / base, 1) if base else None,
        })
    print(json.dumps({
        "benchmark": "dag.insert+try_commit",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "research_anchor_us_per_block": {"4": 75, "64": 270, "note": "includes decode + signature verify"},
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
