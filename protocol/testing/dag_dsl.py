"""A small text format for consensus DAGs and their expected decisions (spec/vectors/dag/*.dag).

Reusable by the simulator: `parse_dag` returns the committee, the blocks in file order (a valid
topological order) with their names, and the expectations; `make_block` builds a test block anywhere.

Format (one statement per line, `#` starts a comment):

    stakes: 1 1 1 1              # authorities A, B, C, ... in committee order
    schedule: round-robin        # leader(r, k) = (r + k) mod n (the default), or `stake` (the real one)
    seed: 00ff                   # epoch seed in hex (default: ascii "tensornet-dag-vectors")
    wave: 3                      # wave length (default 3)
    leaders-per-round: 1         # (default 1)
    leader 3: D                  # override the leader of round 3 (offset 0); `leader 3/1: B` for offset 1
    Round 1 : { * }              # every authority proposes, citing every round-0 block
    Round 4 : { A -> [D3], B -> [-D3], * -> [*], C' -> [*] }
    checkpoint: D3               # after the blocks above, the commits so far are exactly [D3]
    expect D3 commit             # slot D3 ends committed (its primary block D3); `expect D3 commit D3'`
    expect A4 skip               # or `undecided`
    commits: D3 A6               # the whole committed leader sequence
    subdag D3: A1 B1 C1 D1 ...   # the exact blocks of the commit of leader D3
    leaders: 1=B 2=C 3=D         # the schedule must name these leaders (for `schedule: stake`)

Round entries: `X -> [items]` makes X's block; `X' -> [...]`, `X'' -> [...]` make equivocating
siblings, named `X4'` etc.; `*` alone or `* -> [items]` applies to every authority not named in that
statement; a bare `X` means `X -> [*]`. A round may span several statements (e.g. around a checkpoint).
Items: `*` = every primary (unprimed) block of the previous round, `-Ref` removes one (a list
with a removal but no `*` starts from `*`), `Ref` adds one (any earlier round). The author's own
previous block is always first: the first listed block of its own, else its latest primary block
(genesis `X0` if none). Timestamps are round * 1000 + author, so they never go backwards.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

from protocol.consensus.block import DagRef, Slot, genesis_digest
from protocol.consensus.committee import Committee
from protocol.consensus.committer import Committer, Decision
from protocol.consensus.dag_state import DagState, InsertStatus

DEFAULT_SEED = b"tensornet-dag-vectors"


@dataclass(frozen=True, slots=True)
class TestBlock:
    """A block without payload or signature; the digest binds every field, `salt` makes forks differ."""

    __test__ = False  # not a pytest class

    round: int
    author: int
    parents: tuple[DagRef, ...]
    timestamp_ms: int
    salt: int = 0
    digest: bytes = b""

    @property
    def ref(self) -> DagRef:
        return DagRef(self.round, self.author, self.digest)


def block_digest(round: int, author: int, parents: tuple[DagRef, ...], timestamp_ms: int, salt: int) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    h.update(b"tensornet/test-block")
    h.update(round.to_bytes(8, "big") + author.to_bytes(4, "big") + timestamp_ms.to_bytes(8, "big"))
    h.update(salt.to_bytes(4, "big") + len(parents).to_bytes(4, "big"))
    for p in parents:
        h.update(p.round.to_bytes(8, "big") + p.author.to_bytes(4, "big") + p.digest)
    return h.digest()


def make_block(
    round: int, author: int, parents: list[DagRef] | tuple[DagRef, ...], timestamp_ms: int | None = None,
    salt: int = 0,
) -> TestBlock:
    ts = round * 1000 + author if timestamp_ms is None else timestamp_ms
    ps = tuple(parents)
    return TestBlock(round, author, ps, ts, salt, block_digest(round, author, ps, ts, salt))


def author_index(letter: str) -> int:
    return ord(letter) - ord("A")


def author_letter(i: int) -> str:
    return chr(ord("A") + i)


class DslError(ValueError):
    pass


@dataclass
class Expect:
    slot: Slot
    decision: Decision
    block: str | None  # block name for commits


@dataclass
class DagSpec:
    """A parsed vector: everything needed to rebuild the DAG and check the decisions."""

    committee: Committee
    seed: bytes
    wave_length: int = 3
    leaders_per_round: int = 1
    schedule: str = "round-robin"
    overrides: dict[tuple[int, int], int] = field(default_factory=dict)
    blocks: list[TestBlock] = field(default_factory=list)  # file order: parents before children
    names: dict[str, DagRef] = field(default_factory=dict)
    ref_names: dict[DagRef, str] = field(default_factory=dict)
    checkpoints: list[tuple[int, list[str]]] = field(default_factory=list)  # (#blocks before, commits)
    expects: list[Expect] = field(default_factory=list)
    commits: list[str] | None = None
    subdags: dict[str, list[str]] = field(default_factory=dict)
    leaders: dict[tuple[int, int], int] = field(default_factory=dict)

    def leader_fn(self, round: int, offset: int) -> int:
        got = self.overrides.get((round, offset))
        if got is not None:
            return got
        if self.schedule == "stake":
            return self.committee.leaders(round, self.seed, self.leaders_per_round)[offset]
        return (round + offset) % self.committee.size

    def new_committer(self, **kw: object) -> Committer:
        dag = DagState(self.committee, self.seed)
        has_override = self.overrides or self.schedule != "stake"
        return Committer(
            dag,
            wave_length=self.wave_length,
            leaders_per_round=self.leaders_per_round,
            leader_schedule=self.leader_fn if has_override else None,
            **kw,  # type: ignore[arg-type]
        )

    def name(self, ref: DagRef) -> str:
        return self.ref_names.get(ref, repr(ref))


_REF = re.compile(r"^([A-Z])(\d+)('*)$")
_ROUND = re.compile(r"^Round\s+(\d+)\s*:\s*\{(.*)\}\s*$")
_ENTRY = re.compile(r"^(\*|[A-Z]'*)\s*(?:->\s*\[(.*)\])?$")


def _split_entries(body: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _slot(text: str, n: int) -> Slot:
    m = _REF.match(text)
    if not m or m.group(3):
        raise DslError(f"bad slot {text!r}")
    a = author_index(m.group(1))
    if a >= n:
        raise DslError(f"author {m.group(1)} outside committee of {n}")
    return Slot(int(m.group(2)), a)


def parse_dag(text: str) -> DagSpec:
    """Parse a vector; raises DslError on anything malformed (unknown refs, bad syntax)."""
    header, overrides, body = _split_header(text)
    spec = _new_spec(header, overrides)
    latest_primary = {a: spec.names[f"{author_letter(a)}0"] for a in range(spec.committee.size)}
    primaries: dict[int, dict[int, DagRef]] = {0: dict(latest_primary)}
    for line in body:
        m = _ROUND.match(line)
        if m:
            _add_round(spec, line, int(m.group(1)), m.group(2), latest_primary, primaries)
        else:
            _add_statement(spec, line)
    for e in spec.expects:
        if e.block is not None:
            _lookup(spec, e.block)
    for names in [spec.commits or [], *spec.subdags.values(), *(c for _, c in spec.checkpoints)]:
        for nm in names:
            _lookup(spec, nm)
    return spec


def _split_header(text: str) -> tuple[dict[str, str], dict[tuple[int, int], int], list[str]]:
    """The `key: value` header, the `leader R[/K]: X` overrides, and the other statements in file order
    (comments and blank lines dropped)."""
    header: dict[str, str] = {}
    overrides: dict[tuple[int, int], int] = {}
    body: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^(stakes|schedule|seed|wave|leaders-per-round)\s*:\s*(.*)$", line)
        if m:
            header[m.group(1)] = m.group(2).strip()
            continue
        m = re.match(r"^leader\s+(\d+)(?:/(\d+))?\s*:\s*([A-Z])$", line)
        if m:
            overrides[(int(m.group(1)), int(m.group(2) or 0))] = author_index(m.group(3))
            continue
        body.append(line)
    return header, overrides, body


def _new_spec(header: dict[str, str], overrides: dict[tuple[int, int], int]) -> DagSpec:
    """The spec the header describes, holding only the genesis blocks (named `A0`, `B0`, ...)."""
    if "stakes" not in header:
        raise DslError("missing `stakes:` header")
    stakes = [int(x) for x in header["stakes"].split()]
    committee = Committee.for_test(stakes)
    seed = bytes.fromhex(header["seed"]) if "seed" in header else DEFAULT_SEED
    spec = DagSpec(
        committee=committee,
        seed=seed,
        wave_length=int(header.get("wave", "3")),
        leaders_per_round=int(header.get("leaders-per-round", "1")),
        schedule=header.get("schedule", "round-robin"),
        overrides=overrides,
    )
    if spec.schedule not in ("round-robin", "stake"):
        raise DslError(f"unknown schedule {spec.schedule!r}")
    for a in range(committee.size):
        g = DagRef(0, a, genesis_digest(seed, a))
        spec.names[f"{author_letter(a)}0"] = g
        spec.ref_names[g] = f"{author_letter(a)}0"
    return spec


def _lookup(spec: DagSpec, name: str) -> DagRef:
    if name not in spec.names:
        raise DslError(f"unknown block {name!r}")
    return spec.names[name]


def _add_round(
    spec: DagSpec,
    line: str,
    r: int,
    entries_text: str,
    latest_primary: dict[int, DagRef],
    primaries: dict[int, dict[int, DagRef]],
) -> None:
    """Make the blocks of one `Round r : { ... }` statement, in (author, variant) order; a round's unprimed
    blocks become its primaries (what `*` cites in the next round) and their authors' latest primary."""
    if r < 1:
        raise DslError("rounds start at 1 (round 0 is genesis)")
    prev = primaries.get(r - 1, {})
    round_primaries: dict[int, DagRef] = {}
    for a, variant, items in sorted(_plan_round(line, entries_text, spec.committee.size)):
        chosen = _choose_parents(spec, items, prev)
        own = next((p for p in chosen if p.author == a), latest_primary[a])
        parents = [own] + [p for p in chosen if p.author != a]
        blk = make_block(r, a, parents, salt=variant)
        name = f"{author_letter(a)}{r}" + "'" * variant
        if name in spec.names:
            raise DslError(f"block {name} defined twice")
        spec.names[name] = blk.ref
        spec.ref_names[blk.ref] = name
        spec.blocks.append(blk)
        if variant == 0:
            round_primaries[a] = blk.ref
    for a, ref in round_primaries.items():
        latest_primary[a] = ref
    primaries.setdefault(r, {}).update(round_primaries)  # a round may span several statements


def _plan_round(line: str, entries_text: str, n: int) -> list[tuple[int, int, str]]:
    """(author, variant, items) for each block of a round statement; `*` stands for every author it does not
    name."""
    entries = [_ENTRY.match(e) for e in _split_entries(entries_text)]
    if any(e is None for e in entries):
        raise DslError(f"bad entry in {line!r}")
    named = {author_index(e.group(1)) for e in entries if e and len(e.group(1)) == 1 and e.group(1) != "*"}
    planned: list[tuple[int, int, str]] = []
    for e in entries:
        assert e is not None
        who, items = e.group(1), e.group(2) if e.group(2) is not None else "*"
        if who == "*":
            planned.extend((a, 0, items) for a in range(n) if a not in named)
        else:
            a = author_index(who[0])
            if a >= n:
                raise DslError(f"author {who[0]} outside committee of {n}")
            planned.append((a, len(who) - 1, items))
    return planned


def _choose_parents(spec: DagSpec, items: str, prev: dict[int, DagRef]) -> list[DagRef]:
    """The blocks an entry's item list names, in order: `*` is every primary of the previous round (`prev`),
    `-Ref` removes one, `Ref` adds one."""
    chosen: list[DagRef] = []
    item_list = [x.strip() for x in items.split(",") if x.strip()]
    if "*" not in item_list and any(x.startswith("-") for x in item_list):
        item_list.insert(0, "*")  # `[-D3]` reads "everything but D3"
    for item in item_list:
        if item == "*":
            for ref in (prev[k] for k in sorted(prev)):
                if ref not in chosen:
                    chosen.append(ref)
        elif item.startswith("-"):
            ref = _lookup(spec, item[1:].strip())
            if ref in chosen:
                chosen.remove(ref)
        else:
            ref = _lookup(spec, item)
            if ref not in chosen:
                chosen.append(ref)
    return chosen


def _add_statement(spec: DagSpec, line: str) -> None:
    """One expectation statement (checkpoint, expect, commits, subdag, leaders) into `spec`."""
    n = spec.committee.size
    m = re.match(r"^checkpoint\s*:\s*(.*)$", line)
    if m:
        spec.checkpoints.append((len(spec.blocks), m.group(1).split()))
        return
    m = re.match(r"^expect\s+(\S+)\s+(commit|skip|undecided)(?:\s+(\S+))?$", line)
    if m:
        slot = _slot(m.group(1), n)
        decision = Decision(m.group(2))
        blk_name = m.group(3) or (m.group(1) if decision is Decision.COMMIT else None)
        spec.expects.append(Expect(slot, decision, blk_name))
        return
    m = re.match(r"^commits\s*:\s*(.*)$", line)
    if m:
        spec.commits = m.group(1).split()
        return
    m = re.match(r"^subdag\s+(\S+)\s*:\s*(.*)$", line)
    if m:
        spec.subdags[m.group(1)] = m.group(2).split()
        return
    m = re.match(r"^leaders\s*:\s*(.*)$", line)
    if m:
        for tok in m.group(1).split():
            lm = re.match(r"^(\d+)(?:/(\d+))?=([A-Z])$", tok)
            if not lm:
                raise DslError(f"bad leaders entry {tok!r}")
            spec.leaders[(int(lm.group(1)), int(lm.group(2) or 0))] = author_index(lm.group(3))
        return
    raise DslError(f"cannot parse line {line!r}")


def deliver(
    committer: Committer, blocks: list[TestBlock], order: list[int] | None = None,
) -> tuple[list, list]:
    """Insert `blocks` in `order` like a synchronizer: a block with missing ancestors waits in a buffer
    until they arrive. Calls try_commit after every accepted block; returns (commits, decisions)."""
    dag = committer.dag
    waiting: dict[DagRef, list[TestBlock]] = {}
    commits: list = []
    decisions: list = []
    for i in order if order is not None else range(len(blocks)):
        ready = [blocks[i]]
        while ready:
            b = ready.pop()
            res = dag.insert(b)
            if res.status is InsertStatus.MISSING:
                waiting.setdefault(res.missing[0], []).append(b)
                continue
            if res.status is InsertStatus.ACCEPTED:
                commits.extend(committer.try_commit())
                decisions.extend(committer.last_decisions)
            ready.extend(waiting.pop(b.ref, ()))
    if waiting:
        raise AssertionError(f"blocks never delivered: {sum(len(v) for v in waiting.values())}")
    return commits, decisions


def random_dag(
    committee: Committee,
    seed: bytes,
    rounds: int,
    rng: random.Random,
    *,
    equivocators: tuple[int, ...] = (),
    cite_prob: float = 0.7,
    skip_prob: float = 0.1,
    weak_prob: float = 0.05,
) -> list[TestBlock]:
    """A valid random DAG in round order: authors sometimes skip a round, cite a random superset of a
    quorum of the previous round, sometimes add a weak link to an older block; each equivocator makes
    one or two blocks per round, and every citing block picks one of them (parent order is random)."""
    n = committee.size
    stakes = committee.stakes
    quorum = committee.quorum
    latest: dict[int, list[DagRef]] = {a: [DagRef(0, a, genesis_digest(seed, a))] for a in range(n)}
    by_round: dict[int, dict[int, list[DagRef]]] = {0: {a: list(v) for a, v in latest.items()}}
    out: list[TestBlock] = []
    for r in range(1, rounds + 1):
        prev = by_round[r - 1]
        producers = [a for a in range(n) if rng.random() >= skip_prob]
        missing = [a for a in range(n) if a not in producers]
        rng.shuffle(missing)
        while sum(stakes[a] for a in producers) < quorum:
            producers.append(missing.pop())
        here: dict[int, list[DagRef]] = {}
        for a in sorted(producers):
            for variant in range(rng.choice((1, 2)) if a in equivocators else 1):
                own = rng.choice(latest[a])
                stake = stakes[a] if own.round == r - 1 else 0
                others = [x for x in prev if x != a]
                rng.shuffle(others)
                chosen = [x for x in others if rng.random() < cite_prob]
                for x in others:
                    if stake + sum(stakes[y] for y in chosen) >= quorum:
                        break
                    if x not in chosen:
                        chosen.append(x)
                parents = [own] + [rng.choice(prev[x]) for x in chosen]
                for x in range(n):
                    if x != a and x not in chosen and rng.random() < weak_prob:
                        old = [b for b in latest[x] if b.round < r - 1] or [
                            b for rr in range(r - 2, -1, -1) for b in by_round.get(rr, {}).get(x, [])
                        ][:1]
                        if old:
                            parents.append(rng.choice(old))
                tail = parents[1:]
                rng.shuffle(tail)
                blk = make_block(r, a, [parents[0], *tail], salt=variant)
                out.append(blk)
                here.setdefault(a, []).append(blk.ref)
        for a, refs in here.items():
            latest[a] = refs
        by_round[r] = here
    return out
