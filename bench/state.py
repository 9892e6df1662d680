"""State root cost per commit: the incremental tree against the full canonical re-encode, in the same run.

`python -m bench.state --json` prints one JSON object: `root_update_ms` (median time for the tree to take one batch
of `--changes` changed keys and return the new root) and `full_root_ms` (median time to hash the canonical CBOR of
the whole account map, as `State.root()` re-encodes its balances on every commit), each a map from account count
(as a string) to ms. The batch is a commit's worth of account churn: 80% balances changed, 10% new accounts, 10%
accounts emptied (deleted). Times are this process's CPU time (time.process_time), so that a figure taken on a
busy shared machine still says what the work costs. The goal (spec/state-tree.md §6): under 10 ms at 10^6
accounts, growing with log n.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from protocol import codec, crypto
from protocol.state import keys
from protocol.state.tree import MemoryStore, Tree


def _address(i: int) -> bytes:
    return crypto.digest(b"bench-account-%d" % i)


def _balance(i: int, version: int) -> int:
    return 10**9 + (i * 2654435761 + version * 40503) % 10**12


def _batch(n: int, changes: int, version: int) -> dict[int, int | None]:
    """Account index -> new balance (None: emptied) for one commit; spread over the accounts, new ones above n."""
    out: dict[int, int | None] = {}
    new, gone = changes // 10, changes // 10
    for j in range(changes - new - gone):
        i = (version * 7919 + j * 104729) % n
        out[i] = _balance(i, version)
    for j in range(gone):
        out[(version * 15485863 + j * 32452843 + 1) % n] = None
    for j in range(new):
        i = n + version * changes + j
        out[i] = _balance(i, version)
    return out


def _tree_changes(batch: dict[int, int | None]) -> dict[bytes, bytes | None]:
    return {keys.account(_address(i)): None if b is None else codec.encode(b) for i, b in batch.items()}


def measure(n: int, changes: int, updates: int, full_runs: int) -> dict[str, float]:
    balances = {_address(i): _balance(i, 0) for i in range(n)}
    tree = Tree(MemoryStore())
    t0 = time.process_time()
    tree.update({keys.account(a): codec.encode(b) for a, b in balances.items()})
    build_s = time.process_time() - t0

    update_ms = []
    for version in range(1, updates + 1):
        changed = _tree_changes(_batch(n, changes, version))  # encoding the values is the state's work, not the root's
        t0 = time.process_time()
        tree.update(changed)
        update_ms.append((time.process_time() - t0) * 1e3)

    full_ms = []
    for _ in range(full_runs):  # what State.root() does for the balances: sort, encode all, hash
        t0 = time.process_time()
        crypto.digest(codec.encode([[k, v] for k, v in sorted(balances.items())]))
        full_ms.append((time.process_time() - t0) * 1e3)
    return {
        "root_update_ms": round(statistics.median(update_ms), 3),
        "full_root_ms": round(statistics.median(full_ms), 3),
        "build_s": round(build_s, 3),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--accounts", default="10000,100000,1000000", help="comma-separated account counts")
    ap.add_argument("--changes", type=int, default=100, help="changed keys per update (default 100)")
    ap.add_argument("--updates", type=int, default=21, help="timed updates per size; the median is reported")
    ap.add_argument("--full-runs", type=int, default=3, help="timed full re-encodes per size; the median is reported")
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.accounts.split(",")]
    except ValueError:
        ap.error(f"--accounts is a comma-separated list of integers, got {args.accounts!r}")
    if any(s < 10 for s in sizes) or args.changes < 10 or args.updates < 1 or args.full_runs < 1:
        ap.error("need --accounts >= 10 each, --changes >= 10, --updates >= 1 and --full-runs >= 1")

    out: dict[str, object] = {"changes": args.changes, "root_update_ms": {}, "full_root_ms": {}, "build_s": {}}
    for n in sizes:
        res = measure(n, args.changes, args.updates, args.full_runs)
        for name, value in res.items():
            out[name][str(n)] = value  # type: ignore[index]
        if not args.json:
            print(f"{n:>9} accounts: update {res['root_update_ms']:8.2f} ms   full {res['full_root_ms']:10.2f} ms"
                  f"   (tree built in {res['build_s']} s)")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
