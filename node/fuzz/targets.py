"""Fuzz targets: every decoder and validator a peer's bytes reach, the DAG verifier and the state transition.

A target's `check(data)` runs the same code a node runs on those bytes and returns a short label for an
accepted input ("accepted", "accepted:missing", ...). It raises a typed rejection (`ProtocolError`, or one
of the target's `typed` classes) for bad input; anything else it raises is a crash. Oracles turn silent
bugs into crashes: an accepted message must re-encode to exactly its input (canonical form), and the
state must keep its invariants after a fuzzed commit.

The fixtures are small and deterministic (keys derived from fixed tags) so a finding replays anywhere:
a 4-validator committee with real keys and a DAG of rounds 1..3, and a genesis where the test key owns
two subnets (one plain, one commit-reveal), is registered on both and has a live weight commit.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from node.errors import CliError
from node.service import BLOCKS_SPEC, RequestService
from node.storage import CommitRecord
from p2pnet.handshake import mismatch
from p2pnet.reqresp import FrameReader, Kind, ProtocolViolation, Refused, encode_frame
from protocol import codec
from protocol.consensus.block import DagRef
from protocol.consensus.committee import Committee
from protocol.consensus.committer import Committer
from protocol.consensus.core import Core, vertex_from_bytes
from protocol.consensus.dag_state import DagState, InsertStatus
from protocol.consensus.linearizer import commit_digest
from protocol.crypto import Keypair, digest
from protocol.economics.weights import weights_commit_hash
from protocol.errors import ProtocolError, TxRejected
from protocol.messages import (
    CALLS,
    AddStake,
    Block,
    BlockRef,
    BlocksResponse,
    ClaimPayment,
    CloseEscrow,
    Commit,
    CommitsResponse,
    CommitVote,
    CommitWeights,
    CreateSubnet,
    FetchBlocks,
    FetchCommits,
    Message,
    OpenEscrow,
    Propose,
    Query,
    Register,
    RemoveStake,
    ReportEquivocation,
    Response,
    RevealWeights,
    ServeAxon,
    ServiceProof,
    SetHyperparameter,
    SetWeights,
    SignedBlock,
    SignedQuery,
    SignedResponse,
    SignedServiceProof,
    SignedTransaction,
    SignedVoucher,
    Status,
    Transaction,
    Transfer,
    Vote,
    Voucher,
)
from protocol.state.genesis import build_genesis
from protocol.state.state import State
from protocol.state.transition import apply_commit, check_tx

CHAIN_ID = "tensornet-fuzz"
NOW_MS = 10_000_000  # the verifier's clock: fixed, so a finding replays the same way
UNIT = 10**9
COMMITTEE_SIZE = 4
EPOCH_HEIGHT = 19  # epoch_due for netuid 1 (tempo 6) and netuid 2 (tempo 10)
DAG_ROUNDS = 3  # rounds inserted into the DAG fixture; round DAG_ROUNDS + 1 blocks are fresh seeds


class FuzzInvariant(AssertionError):
    """An oracle failed: the code accepted an input but broke a property (canonical form, invariants)."""


class Rejected(ProtocolError):
    """A typed refusal made by the harness on behalf of code that refuses by return value (a handshake
    mismatch, an insert the DAG refuses without raising)."""


def _key(tag: str) -> Keypair:
    return Keypair(hashlib.blake2b(f"tensornet-fuzz/{tag}".encode(), digest_size=32).digest())


TEST_KEY = _key("test-key")  # funded, owns the subnets; --sign-with-test-key signs transactions with it
OTHER_KEY = _key("other-key")  # a second registered neuron, so weights can point at someone else
VALIDATOR_KEYS = tuple(_key(f"validator/{i}") for i in range(COMMITTEE_SIZE))
SALT = b"fuzz-salt-0123456789"
PEER_ID = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
REVEAL_UIDS = (0, 1)
REVEAL_VALUES = (30000, 65535)


@dataclass
class Target:
    """One fuzz target. `cls` is the wire type of the whole input (structure-aware mutation walks its
    schema); `item_cls` is set instead when the input is a CBOR array of encoded messages (the state)."""

    name: str
    description: str
    check: Callable[[bytes], str]
    seeds: Callable[[], list[bytes]]
    cls: type[Message] | None = None
    item_cls: type[Message] | None = None
    typed: tuple[type[BaseException], ...] = (ProtocolError,)
    tags: tuple[str, ...] = field(default_factory=tuple)


# --- fixtures -----------------------------------------------------------------------------------


def _sign_tx(key: Keypair, nonce: int, call: Message) -> bytes:
    return SignedTransaction.create(Transaction(CHAIN_ID, key.public, nonce, call, 0), key).to_bytes()


@dataclass
class StateFixture:
    state: State  # after the set-up commits
    txs: dict[str, bytes]  # one valid signed transaction per call kind, from TEST_KEY at its next nonce
    nonce: int


@functools.cache
def state_fixture() -> StateFixture:
    """A genesis with 4 validators and two subnets, then set-up commits (registrations, a weight commit)
    so that each transaction kind has a seed the state accepts: mutants start from deep inside."""
    hp = {"tempo": 10, "weights_rate_limit": 0, "min_allowed_weights": 1, "immunity_period": 0}
    genesis = build_genesis(
        CHAIN_ID,
        validators=[(k.public, 10_000 * UNIT) for k in VALIDATOR_KEYS],
        balances={TEST_KEY.public: 1_000_000 * UNIT, OTHER_KEY.public: 1_000_000 * UNIT},
        subnets=[
            (TEST_KEY.public, "fuzz-plain", {**hp, "tempo": 6}),
            (TEST_KEY.public, "fuzz-reveal", {**hp, "commit_reveal_enabled": 1}),
        ],
        subnet_min_burn=UNIT,
    )
    state = State.from_genesis(genesis)
    big = 10**6 * UNIT
    setup = [
        _sign_tx(TEST_KEY, 0, Register(1, TEST_KEY.public, big)),
        _sign_tx(TEST_KEY, 1, Register(2, TEST_KEY.public, big)),
        _sign_tx(OTHER_KEY, 0, Register(1, OTHER_KEY.public, big)),
        _sign_tx(OTHER_KEY, 1, Register(2, OTHER_KEY.public, big)),
        _sign_tx(TEST_KEY, 2, AddStake(TEST_KEY.public, 1000 * UNIT)),
    ]
    commit_hash = weights_commit_hash(TEST_KEY.public, 2, REVEAL_UIDS, REVEAL_VALUES, SALT, 0)
    setup2 = [
        _sign_tx(TEST_KEY, 3, CommitWeights(2, commit_hash)),
        _sign_tx(OTHER_KEY, 2, Propose("max_subnets", 40, "fuzz")),  # TEST_KEY's stake is in its snapshot
        _sign_tx(TEST_KEY, 4, OpenEscrow(1, 1000 * UNIT, EPOCH_HEIGHT + 1000)),  # escrow 1: claims land
        _sign_tx(TEST_KEY, 5, OpenEscrow(1, UNIT, 3)),  # escrow 2: expired at the fuzzed height, can close
    ]
    for height, txs in ((1, setup), (2, setup2)):
        bad = [r for r in apply_commit(state, height, txs) if not r.ok]
        if bad:
            raise RuntimeError(f"fuzz state fixture: set-up transaction refused: {bad[0].rule}: {bad[0].message}")
    sn = state.subnet(2)
    epoch = sn.epoch_index
    # to the reveal epoch of netuid 2, and past an epoch of netuid 1 (validator permits are given there)
    while state.subnet(2).epoch_index < epoch + sn.hp.reveal_period or state.subnet(1).epoch_index < 1:
        apply_commit(state, state.height + 1, [])
    # A fuzzed commit lands on height EPOCH_HEIGHT, where both subnets run Yuma over the fuzzed weights
    # (txs apply before the epoch, so a reveal there is still in its reveal epoch).
    while state.height + 1 < EPOCH_HEIGHT:
        apply_commit(state, state.height + 1, [])
    nonce = state.next_nonce(TEST_KEY.public)
    calls: dict[str, Message] = {
        "transfer": Transfer(OTHER_KEY.public, 1000),
        "add_stake": AddStake(TEST_KEY.public, 1000),
        "remove_stake": RemoveStake(TEST_KEY.public, 10),
        "create_subnet": CreateSubnet("fuzz-new", big),
        "register": Register(1, _key("fresh-hotkey").public, big),
        "serve_axon": ServeAxon(1, PEER_ID, ("/ip4/127.0.0.1/tcp/30400",)),
        "set_weights": SetWeights(1, (0, 1), (100, 200), 0),
        "commit_weights": CommitWeights(2, bytes(range(32))),
        "reveal_weights": RevealWeights(2, REVEAL_UIDS, REVEAL_VALUES, SALT, 0),
        "set_hyperparameter": SetHyperparameter(1, "tempo", 20),
        "propose": Propose("default.tempo", 99, "fuzz seed"),
        "vote": Vote(1, 1),
        "report_equivocation": _equivocation_evidence(VALIDATOR_KEYS[0], 0),
        "open_escrow": OpenEscrow(1, 1000, EPOCH_HEIGHT + 100),
        "claim_payment": _claim_seed(),
        "close_escrow": CloseEscrow(2),
    }
    txs = {kind: _sign_tx(TEST_KEY, nonce, call) for kind, call in calls.items()}
    for kind, raw in txs.items():  # every seed must get past every check, or the fixture is wrong
        try:
            check_tx(state, SignedTransaction.from_bytes(raw))
        except TxRejected as exc:
            raise RuntimeError(f"fuzz state fixture: seed {kind} refused: {exc}") from exc
    return StateFixture(state, txs, nonce)


def _equivocation_evidence(key: Keypair, author: int) -> Message:
    """Two signed headers by one committee member for one slot of epoch 0 (a valid report)."""
    blocks = [Block(CHAIN_ID, 0, 3, author, 1_000, (), (payload,), ()) for payload in (b"a", b"b")]
    first, second = (SignedBlock.create(b, key).signed_header() for b in blocks)
    return ReportEquivocation(first, second)


def _claim_seed() -> ClaimPayment:
    """TEST_KEY's voucher on escrow 1 paying OTHER_KEY (a registered miner), with OTHER_KEY's proof."""
    voucher = SignedVoucher.create(
        Voucher(CHAIN_ID, 1, 7, TEST_KEY.public, OTHER_KEY.public, bytes(range(32)), 1000), TEST_KEY
    )
    proof = SignedServiceProof.create(ServiceProof(CHAIN_ID, OTHER_KEY.public, voucher.digest, bytes(32)), OTHER_KEY)
    return ClaimPayment(voucher, proof)


@dataclass
class DagFixture:
    committee: Committee
    core: Core  # verify only; its DAG is the template below
    dag: DagState  # rounds 1..DAG_ROUNDS inserted
    blocks: list[bytes]  # every signed block, rounds 1..DAG_ROUNDS+1 (the last round is not inserted)
    commits: list[Commit]
    by_digest: dict[bytes, bytes] = field(default_factory=dict)  # what the stub chain serves
    by_round: list[tuple[int, bytes]] = field(default_factory=list)


@functools.cache
def dag_fixture() -> DagFixture:
    """4 validators with real keys; every author proposes in every round, parents = the whole previous
    round (own first), a few blocks carry transactions and commit votes."""
    committee = Committee(tuple(k.public for k in VALIDATOR_KEYS), (10,) * COMMITTEE_SIZE)
    core = Core(CHAIN_ID, 0, committee, hashlib.blake2b(b"tensornet-fuzz/epoch-seed", digest_size=32).digest())
    txs = list(state_fixture().txs.values())
    prev = [BlockRef(0, a, g.digest) for a, g in enumerate(core.dag.genesis)]
    blocks: list[bytes] = []
    for r in range(1, DAG_ROUNDS + 2):
        refs = []
        for a, key in enumerate(VALIDATOR_KEYS):
            parents = (prev[a],) + tuple(p for i, p in enumerate(prev) if i != a)
            payload = tuple(txs[(r + a) % len(txs) :][:2]) if (r + a) % 2 else ()
            votes = (CommitVote(r, bytes([r]) * 32),) if a == 0 else ()
            body = Block(CHAIN_ID, 0, r, a, 1000 * r, parents, payload, votes)
            data = SignedBlock.create(body, key).to_bytes()
            blocks.append(data)
            v = vertex_from_bytes(data)
            refs.append(BlockRef(r, a, v.digest))
            if r <= DAG_ROUNDS:
                core.add(core.verify(data, NOW_MS), NOW_MS)
        prev = refs
    commits = [
        Commit(i, BlockRef(i, i % COMMITTEE_SIZE, bytes([i]) * 32), (BlockRef(i, 0, bytes(32)),), 1000 * i, bytes(32))
        for i in range(1, 4)
    ]
    by_round = [(SignedBlock.from_bytes(b).body.round, b) for b in blocks]
    return DagFixture(committee, core, core.dag, blocks, commits, {digest(b): b for b in blocks}, by_round)


def clone_dag(d: DagState) -> DagState:
    """A copy of the template DAG that one input may insert into without affecting the next input.

    Copies the index containers (a fresh DagState plus re-inserting the fixture would cost ~1 ms per input)."""
    c = copy.copy(d)
    c._blocks = dict(d._blocks)
    c._parents = dict(d._parents)
    c._slots = {k: list(v) for k, v in d._slots.items()}
    c._rounds = {k: list(v) for k, v in d._rounds.items()}
    return c


# --- checks -------------------------------------------------------------------------------------


def _canonical(msg: Message, data: bytes) -> None:
    if msg.to_bytes() != data:
        raise FuzzInvariant(f"{type(msg).__name__} accepted bytes that are not its canonical encoding")


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (a request handler over in-memory stubs) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise FuzzInvariant("handler suspended: the fuzz stub expected it to finish without waiting")


def check_codec(data: bytes) -> str:
    value = codec.decode(data)
    if codec.encode(value) != data:
        raise FuzzInvariant("codec.decode accepted bytes that codec.encode does not reproduce")
    return "accepted"


def _decoder(cls: type[Message]) -> Callable[[bytes], str]:
    def check(data: bytes) -> str:
        _canonical(cls.from_bytes(data), data)
        return "accepted"

    return check


def check_block(data: bytes) -> str:
    sb = SignedBlock.from_bytes(data)
    _canonical(sb, data)
    fx = dag_fixture()
    if not fx.committee.is_valid_index(sb.body.author):
        raise Rejected(f"author {sb.body.author} outside the committee")
    sb.verify(CHAIN_ID, fx.committee.public_keys[sb.body.author])
    return "accepted"


def check_dag(data: bytes) -> str:
    """Core.verify (decode, epoch, author, signature, clock drift), then DagState.insert into a copy of the
    fixture DAG; an accepted block also runs the commit rule over the result."""
    fx = dag_fixture()
    v = fx.core.verify(data, NOW_MS)
    dag = clone_dag(fx.dag)
    result = dag.insert(v)
    if result.status is InsertStatus.ACCEPTED:
        committer = Committer(dag, auto_prune=False)
        subs = committer.try_commit()
        return f"accepted:commits={len(subs)}"
    return f"accepted:{result.status.name.lower()}"


def _tx_check(kind: str) -> Callable[[bytes], str]:
    def check(data: bytes) -> str:
        stx = SignedTransaction.from_bytes(data)
        _canonical(stx, data)
        stx.verify(CHAIN_ID)
        check_tx(state_fixture().state, stx)  # dry: the fixture never changes
        return f"accepted:{stx.body.call.KIND}"

    check.__doc__ = f"decode, verify and mempool-check a {kind} transaction against the fixture state"
    return check


def _status_ours() -> Status:
    fx = state_fixture()
    return Status(CHAIN_ID, fx.state.params.genesis_hash, fx.state.height, bytes(32), 0, DAG_ROUNDS, True)


def check_status(data: bytes) -> str:
    theirs = Status.from_bytes(data)
    _canonical(theirs, data)
    reason = mismatch(_status_ours(), theirs)
    if reason is not None:
        raise Rejected(f"handshake refuses the peer: {reason}")
    return "accepted"


class _StubStore:
    def commits(self, start: int, end: int) -> list[Any]:
        return [
            CommitRecord(c.index, bytes(32), c.to_bytes(), bytes(32))
            for c in dag_fixture().commits
            if start <= c.index <= end
        ]


class _StubChain:
    """What the daemon's request handlers read from their chain, served from the DAG fixture."""

    store = _StubStore()
    epoch = 0  # the fixture's DAG is epoch 0

    def blocks_by_digest(self, digests: list[bytes]) -> list[bytes]:
        by = dag_fixture().by_digest
        return [by[d] for d in digests[:32] if d in by]

    def blocks_by_round(self, epoch: int, first: int, last: int, limit: int = 32) -> list[bytes]:
        if epoch != 0:  # the fixture's DAG is epoch 0
            return []
        return [b for r, b in dag_fixture().by_round if first <= r <= last][:limit]


def _no_push(peer: Any, data: bytes) -> Any:
    raise FuzzInvariant("a fetch handler took a pushed block")


_STUB_SERVICE = RequestService(_StubChain(), on_push=_no_push)  # type: ignore[arg-type]  # duck-typed Chain


def check_fetch_blocks(data: bytes) -> str:
    """The daemon's /tensornet/blocks/1 handler, over the fixture's blocks; its answer must decode."""
    resp = _drive(_STUB_SERVICE.serve_blocks(None, data))
    return f"accepted:blocks={len(BlocksResponse.from_bytes(resp).blocks)}"


def check_fetch_commits(data: bytes) -> str:
    """The daemon's /tensornet/commits/1 handler, over the fixture's commits; its answer must decode."""
    resp = _drive(_STUB_SERVICE.serve_commits(None, data))
    return f"accepted:commits={len(CommitsResponse.from_bytes(resp).commits)}"


def check_blocks_response(data: bytes) -> str:
    """What a syncing node does with a BlocksResponse: decode it, then decode and verify every block."""
    resp = BlocksResponse.from_bytes(data)
    _canonical(resp, data)
    fx = dag_fixture()
    ok = 0
    for raw in resp.blocks:
        try:
            fx.core.verify(raw, NOW_MS)
            ok += 1
        except ProtocolError:
            continue  # the daemon counts and skips a bad block inside a response
    return f"accepted:valid_blocks={min(ok, 4)}"


def _ref(r: BlockRef) -> Any:
    return DagRef(r.round, r.author, r.digest)


def check_commits_response(data: bytes) -> str:
    resp = CommitsResponse.from_bytes(data)
    _canonical(resp, data)
    for c in resp.commits:
        commit_digest(c.index, _ref(c.leader), [_ref(b) for b in c.blocks], c.prev_digest)
    return "accepted"


def check_commit(data: bytes) -> str:
    c = Commit.from_bytes(data)
    _canonical(c, data)
    commit_digest(c.index, _ref(c.leader), [_ref(b) for b in c.blocks], c.prev_digest)
    return "accepted"


def _signed_check(cls: type[SignedQuery] | type[SignedResponse]) -> Callable[[bytes], str]:
    def check(data: bytes) -> str:
        msg = cls.from_bytes(data)
        _canonical(msg, data)
        msg.verify(CHAIN_ID)
        return "accepted"

    return check


class _BytesStream:
    """A stream over one input whose reads never wait, so FrameReader runs without an event loop."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    async def read(self, n: int | None = None) -> bytes:
        end = len(self.data) if n is None else self.pos + n
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:  # pragma: no cover - the reader never writes
        raise FuzzInvariant("FrameReader wrote to its stream")


def check_frame(data: bytes) -> str:
    """p2pnet's request/response framing (varint length, kind, request id, payload) as a server reads it;
    each REQUEST payload within the cap then goes to the /tensornet/blocks/1 handler."""
    reader = FrameReader(_BytesStream(data))
    frames = 0
    while True:
        try:
            kind, _rid, payload, _size = _drive(reader.next(lambda k, r: BLOCKS_SPEC.max_request))
        except EOFError:
            break
        frames += 1
        if kind == Kind.REQUEST and payload is not None:
            try:
                _drive(_STUB_SERVICE.serve_blocks(None, payload))
            except (ProtocolError, Refused):
                pass  # the server answers an ERROR frame for this one request and keeps the stream
    return f"accepted:frames={min(frames, 4)}"


def check_state(data: bytes) -> str:
    """apply_commit on a copy of the fixture state with a CBOR array of fuzzed transactions (both subnets
    run their epoch at that height), then the state's own invariants; every input starts from the same state."""

    txs = codec.decode(data)
    if type(txs) is not list or any(type(t) is not bytes for t in txs):
        raise Rejected("a state input is a CBOR array of byte strings (signed transactions)")
    state = copy.deepcopy(state_fixture().state)  # 2x cheaper than State.load(snapshot)
    receipts = apply_commit(state, state.height + 1, txs)
    try:
        state.check_invariants()
    except ProtocolError as exc:
        raise FuzzInvariant(f"state invariant broken after a fuzzed commit: {exc}") from exc
    ok = sum(r.ok for r in receipts)
    return f"accepted:ok={min(ok, 3)}"


# --- seeds --------------------------------------------------------------------------------------


def _samples(cls: type[Message], n: int = 8) -> list[bytes]:
    """Random valid instances from protocol/testing/wire_strategies.py when it is importable (it needs hypothesis)."""
    try:  # lazy: wire_strategies needs hypothesis, a test extra that is optional at run time
        from protocol.testing.wire_strategies import random_message
    except ImportError:
        return []
    rng = random.Random(f"tensornet-fuzz/{cls.__name__}")
    return [random_message(cls, rng).to_bytes() for _ in range(n)]


def _seeds_blocks() -> list[bytes]:
    return list(dag_fixture().blocks)


def _seeds_tx(kind: str) -> Callable[[], list[bytes]]:
    def seeds() -> list[bytes]:
        # the accepted seed, then the same call with tips (the mutator takes `tip` to its edges, u64 max)
        raw = state_fixture().txs[kind]
        body = SignedTransaction.from_bytes(raw).body
        tips = (1, 123_456_789)
        return [raw, *(SignedTransaction.create(replace(body, tip=t), TEST_KEY).to_bytes() for t in tips)]

    return seeds


def _seeds_state() -> list[bytes]:
    fx = state_fixture()
    kinds = list(fx.txs)
    out = [codec.encode([]), codec.encode([fx.txs["transfer"]])]
    for i in range(len(kinds)):
        # a valid run of consecutive nonces: each seed exercises a different mix of handlers
        group = [kinds[(i + j) % len(kinds)] for j in range(3)]
        txs = []
        for j, kind in enumerate(group):
            stx = SignedTransaction.from_bytes(fx.txs[kind])
            body = Transaction(CHAIN_ID, TEST_KEY.public, fx.nonce + j, stx.body.call, 0)
            txs.append(SignedTransaction.create(body, TEST_KEY).to_bytes())
        out.append(codec.encode(txs))
    return out


def _seeds_status() -> list[bytes]:
    ours = _status_ours()
    return [ours.to_bytes(), Status(CHAIN_ID, ours.genesis_hash, 99, bytes([7]) * 32, 0, 400, False).to_bytes()]


def _seeds_fetch_blocks() -> list[bytes]:
    blocks = dag_fixture().blocks
    bodies = [(SignedBlock.from_bytes(b).body, digest(b)) for b in blocks[:6]]
    refs = tuple(BlockRef(b.round, b.author, d) for b, d in bodies)
    return [FetchBlocks(0, refs, 0, 0).to_bytes(), FetchBlocks(0, (), 1, 9).to_bytes(),
            FetchBlocks(0, (), 3, 3).to_bytes()]  # a reversed range is refused (a bad request)


def _seeds_blocks_response() -> list[bytes]:
    blocks = dag_fixture().blocks
    return [BlocksResponse(tuple(blocks[:4])).to_bytes(), BlocksResponse(()).to_bytes()]


def _seeds_commits() -> list[bytes]:
    return [c.to_bytes() for c in dag_fixture().commits]


def _seeds_frame() -> list[bytes]:
    fb = _seeds_fetch_blocks()
    return [
        encode_frame(Kind.REQUEST, 1, fb[0]),
        encode_frame(Kind.REQUEST, 2, fb[1]) + encode_frame(Kind.REQUEST, 3, fb[2]),
        encode_frame(Kind.RESPONSE, 7, BlocksResponse(()).to_bytes()),
    ]


def _seeds_query() -> list[bytes]:
    seed = codec.encode({"m": 4, "n": 4, "seed": bytes(32)})
    q = Query(CHAIN_ID, 1, TEST_KEY.public, TEST_KEY.public, bytes(16), NOW_MS, seed)
    return [SignedQuery.create(q, TEST_KEY).to_bytes()]


def _seeds_response() -> list[bytes]:
    r = Response(CHAIN_ID, 1, TEST_KEY.public, bytes(16), 0, codec.encode({"answer": bytes(64)}))
    return [SignedResponse.create(r, TEST_KEY).to_bytes()]


def _seeds_codec() -> list[bytes]:
    out = [codec.encode(v) for v in (0, -1, 24, 1 << 40, b"", "x", [], {}, [1, [2, [3]]], {"a": 1, 2: b"b"}, None)]
    return out + _seeds_blocks()[:2] + _seeds_state()[2:3]


# --- the registry -------------------------------------------------------------------------------


def _tx_target(kind: str) -> Target:
    extra = {
        "commit_weights": " (weight commit: BLAKE2b hash with salt)",
        "reveal_weights": " (weight reveal: the hash must match a live commit from the right epoch)",
    }.get(kind, "")
    return Target(
        f"tx.{kind}",
        f"SignedTransaction carrying {kind}{extra}: decode, canonical form, signature, then State.check_tx "
        "against a small genesis where the seed is accepted",
        _tx_check(kind),
        _seeds_tx(kind),
        cls=SignedTransaction,
    )


def _build() -> dict[str, Target]:
    targets = [
        Target("codec", "protocol.codec.decode alone: canonical CBOR, limits; accepted bytes must re-encode "
               "identically", check_codec, _seeds_codec),
        Target("block", "SignedBlock decode, canonical form, committee author and block signature",
               check_block, _seeds_blocks, cls=SignedBlock),
        Target("dag", "DAG block verifier: Core.verify (decode, epoch, author, signature, clock drift) then "
               "DagState.insert into a 4-validator DAG of real signed blocks, and the commit rule",
               check_dag, _seeds_blocks, cls=SignedBlock),
        *[_tx_target(cls.KIND) for cls in CALLS],
        Target("status", "handshake Status on /tensornet/status/1: decode, then the chain id / genesis check",
               check_status, _seeds_status, cls=Status),
        Target("fetch_blocks", "FetchBlocks request through the daemon's /tensornet/blocks/1 handler",
               check_fetch_blocks, _seeds_fetch_blocks, cls=FetchBlocks),
        Target("blocks_response", "BlocksResponse as a syncing node reads it: decode, then verify each block",
               check_blocks_response, _seeds_blocks_response, cls=BlocksResponse),
        Target("fetch_commits", "FetchCommits request through the daemon's /tensornet/commits/1 handler",
               check_fetch_commits, lambda: [FetchCommits(1, 3).to_bytes(), FetchCommits(5, 5).to_bytes()],
               cls=FetchCommits),
        Target("commits_response", "CommitsResponse decode, canonical form and each commit's digest",
               check_commits_response, lambda: [CommitsResponse(tuple(dag_fixture().commits)).to_bytes()],
               cls=CommitsResponse),
        Target("commit", "Commit (one height of the chain) decode, canonical form and digest", check_commit,
               _seeds_commits, cls=Commit),
        Target("blockref", "BlockRef decode and canonical form", _decoder(BlockRef),
               lambda: [BlockRef(3, 1, bytes(32)).to_bytes()], cls=BlockRef),
        Target("query", "subnet SignedQuery (validator to miner): decode, canonical form, caller signature",
               _signed_check(SignedQuery), _seeds_query, cls=SignedQuery),
        Target("response", "subnet SignedResponse (miner to validator): decode, canonical form, miner signature",
               _signed_check(SignedResponse), _seeds_response, cls=SignedResponse),
        Target("frame", "request/response frames (uvarint length, kind, request id, payload) as the server's "
               "FrameReader parses them, each request then through the blocks handler", check_frame, _seeds_frame),
        Target("state", "state transition: apply_commit of a CBOR array of fuzzed signed transactions on a small "
               "genesis (two subnets, registered neurons, a live weight commit), then the state invariants",
               check_state, _seeds_state, item_cls=SignedTransaction),
    ]
    by_name = {t.name: t for t in targets}
    by_name["frame"].typed = (ProtocolError, ProtocolViolation)
    for name in ("fetch_blocks", "fetch_commits"):  # a handler refuses a malformed request on purpose
        by_name[name].typed = (ProtocolError, Refused)
    return {t.name: t for t in targets}


@functools.cache
def registry() -> dict[str, Target]:
    return _build()


def get(name: str) -> Target:
    """The target called `name`, or a KeyError-free typed error listing the names."""
    targets = registry()
    if name not in targets:
        raise CliError(f"unknown fuzz target {name!r}; known: {', '.join(targets)}")
    return targets[name]


def extra_samples(target: Target) -> list[bytes]:
    """Random valid messages of the target's type (more shapes than the fixtures), when available."""
    return _samples(target.cls) if target.cls is not None else []
