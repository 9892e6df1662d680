"""The chain state: the data, its canonical encoding and root, and the ledger primitives that change it.

Pure and deterministic: the same genesis and the same committed transactions give the same state root on
every machine. spec/state.md is normative. This module is the data only, as lighthouse's BeaconState never
imports state_processing. It imports the records it is made of (genesis, escrow, governance, lifecycle,
supply) and never protocol/state/transition.py or protocol/state/handlers/, which change it through the
public primitives below (credit, debit, add_stake, sub_stake, claim_hotkey, need_*). So the arrows go one way:
state.py <- handlers/ <- transition.py (spec/state.md §2).

    State.from_genesis(genesis) -> State
    state.root() -> bytes;  state.prove(key) -> (value | None, Proof)
    state.snapshot() -> bytes;  State.load(data) -> State
    State.from_records(tree items, positions) -> State;  state.positions(), state.encoded_positions(pid)
    state.account(pubkey), state.subnet(netuid), state.metagraph(netuid), state.committee(),
    state.next_nonce(pubkey), state.fee_of(stx), supply_of(state), state.check_invariants()

The transition function (apply_commit, check_tx) is protocol/state/transition.py.

The root is the root of the state tree (protocol/state/tree.py, spec/state.md §9): every record sits under its
typed key (protocol/state/keys.py), and `root()` re-encodes only the keys written since the last root. Writes are
recorded where they happen: the maps are `Tracked` dicts and sets that note each key they are written at; subnets
and neurons carry a flag their __setattr__ raises; escrows and proposals changed in place are reported through
`changed_escrow` / `changed_proposal`; the chain-wide records are compared to what the last root saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from protocol import codec, crypto
from protocol.economics.emission import UNIT, format_tokens
from protocol.economics.fees import claim_fee, tx_fee
from protocol.economics.hyperparams import Hyperparams
from protocol.economics.pricing import subnet_price
from protocol.economics.weights import MAX_UNREVEALED_COMMITS
from protocol.errors import DecodeError, StateError, TxRejected
from protocol.messages import SignedTransaction
from protocol.proof import EMPTY, Proof
from protocol.state import keys
from protocol.state.escrow import Escrow, Escrows
from protocol.state.genesis import Endpoint, Genesis
from protocol.state.governance import Governance, Proposal
from protocol.state.keys import Family
from protocol.state.lifecycle import Deregistration, Lifecycle, immune_until
from protocol.state.supply import Supply
from protocol.state.tree import MemoryStore, NodeStore, Tree

ROOT_NETUID = 0  # not a subnet: serve_axon on netuid 0 announces a validator's consensus endpoint
INITIAL_BURN = 100_000_000  # subtensor's InitialBurn: 0.1 token
SNAPSHOT_VERSION = 10  # 2: escrows; 3: registration counters, served_at; 4: lifecycle; 5: governance; 6: epochs
# 7: transaction fee parameters; 8: fees_burned; 9: proposals snapshot stake positions (delegated votes);
# 10: the root is the state tree's (spec/state.md §9; the snapshot layout is unchanged)
_SNAPSHOT_MAX = 1 << 34
# The chain-wide records under GLOBAL keys (spec/state.md §9), in the order root() compares them.
GLOBALS = ("height", "supply", "subnet_price", "params", "epoch", "offences", "escrows", "governance")

K = TypeVar("K")
V = TypeVar("V")


class Tracked(dict[K, V]):
    """A dict that notes every key written (set, deleted, or `touch`ed: its value changed in place) since the last
    `drain`, so the root re-encodes those keys only. A new Tracked counts all its keys as written."""

    __slots__ = ("dirty",)

    def __init__(self, items: Iterable[tuple[K, V]] | dict[K, V] = ()) -> None:
        super().__init__(items)
        self.dirty: set[K] = set(self)

    def __setitem__(self, key: K, value: V) -> None:
        self.dirty.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        self.dirty.add(key)
        super().__delitem__(key)

    def pop(self, key: K, *default: Any) -> Any:
        self.dirty.add(key)
        return super().pop(key, *default)

    def setdefault(self, key: K, default: Any = None) -> Any:
        if key not in self:
            self.dirty.add(key)
        return super().setdefault(key, default)

    def update(self, *args: Any, **kw: Any) -> None:
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def clear(self) -> None:
        self.dirty.update(self)
        super().clear()

    def popitem(self) -> tuple[K, V]:
        k, v = super().popitem()
        self.dirty.add(k)
        return k, v

    def __ior__(self, other: Any) -> Tracked[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def touch(self, key: K) -> None:
        """The value at `key` changed in place."""
        self.dirty.add(key)

    def drain(self) -> set[K]:
        out, self.dirty = self.dirty, set()
        return out

    def __reduce__(self) -> tuple:
        # pickle would set the items before the `dirty` slot exists; copy and pickle both rebuild through this
        return _restored, (type(self), dict(self), self.dirty)


class TrackedSet(set[K]):
    """A set that notes the elements added or removed since the last `drain` (see Tracked)."""

    __slots__ = ("dirty",)

    def __init__(self, items: Iterable[K] = ()) -> None:
        super().__init__(items)
        self.dirty: set[K] = set(self)

    def add(self, item: K) -> None:
        self.dirty.add(item)
        super().add(item)

    def discard(self, item: K) -> None:
        self.dirty.add(item)
        super().discard(item)

    def remove(self, item: K) -> None:
        self.dirty.add(item)
        super().remove(item)

    def pop(self) -> K:
        item = super().pop()
        self.dirty.add(item)
        return item

    def clear(self) -> None:
        self.dirty.update(self)
        super().clear()

    def update(self, *others: Iterable[K]) -> None:
        for other in others:
            for item in other:
                self.add(item)

    def __ior__(self, other: Any) -> TrackedSet[K]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def drain(self) -> set[K]:
        out, self.dirty = self.dirty, set()
        return out

    def __reduce__(self) -> tuple:
        return _restored, (type(self), set(self), self.dirty)


def _restored(cls: type, items: Any, dirty: set) -> Any:
    """A Tracked or TrackedSet with its items and its record of writes, as it was (copy, pickle)."""
    out = cls(items)
    out.dirty = set(dirty)
    return out


@dataclass(frozen=True, slots=True)
class CommitteeMember:
    hotkey: bytes
    stake: int
    peer_id: str
    multiaddrs: tuple[str, ...]


@dataclass(slots=True)
class Neuron:
    hotkey: bytes
    coldkey: bytes
    registered_at: int
    last_update: int = 0
    last_commit: int = 0
    weights: tuple[tuple[int, int], ...] = ()
    bonds: tuple[tuple[int, int], ...] = ()
    rank: int = 0
    trust: int = 0
    consensus: int = 0
    incentive: int = 0
    dividends: int = 0
    validator_trust: int = 0
    emission: int = 0
    validator_permit: bool = False
    axon: Endpoint | None = None
    served_at: int = 0  # height of the last serve_axon (0: never), for serving_rate_limit
    _dirty: bool = field(default=True, repr=False, compare=False)  # changed since the last root

    def __setattr__(self, name: str, value: Any) -> None:
        # Any change marks the neuron for the next root, so the root never reads a stale one.
        object.__setattr__(self, name, value)
        if name != "_dirty":
            object.__setattr__(self, "_dirty", True)

    def to_obj(self) -> list:
        return [
            self.hotkey,
            self.coldkey,
            self.registered_at,
            self.last_update,
            self.last_commit,
            [list(p) for p in self.weights],
            [list(p) for p in self.bonds],
            [self.rank, self.trust, self.consensus, self.incentive, self.dividends, self.validator_trust],
            self.emission,
            self.validator_permit,
            None if self.axon is None else self.axon.to_obj(),
            self.served_at,
        ]

    @classmethod
    def from_obj(cls, o: list) -> Neuron:
        r = o[7]
        return cls(
            o[0],
            o[1],
            o[2],
            o[3],
            o[4],
            tuple((a, b) for a, b in o[5]),
            tuple((a, b) for a, b in o[6]),
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            o[8],
            o[9],
            None if o[10] is None else Endpoint(o[10][0], tuple(o[10][1])),
            o[11],
        )


@dataclass(slots=True)
class Subnet:
    netuid: int
    name: str
    owner: bytes
    created_at: int
    hp: Hyperparams
    burn: int = INITIAL_BURN
    neurons: list[Neuron] = field(default_factory=list)
    pending_owner: int = 0
    pending_miners: int = 0
    pending_validators: int = 0
    epoch_index: int = 0
    last_epoch_height: int = 0
    # hotkey -> unrevealed commits, oldest first: (hash, epoch_index, height); they go under the neuron's key
    commits: Tracked[bytes, list[tuple[bytes, int, int]]] = field(default_factory=Tracked)
    uid_of: dict[bytes, int] = field(default_factory=dict)
    # Registration caps (§3): registrations at the current height (reset at the start of each commit) and
    # since reg_interval_start (reset once adjustment_interval heights have passed).
    regs_this_block: int = 0
    regs_this_interval: int = 0
    reg_interval_start: int = 0
    _dirty: bool = field(default=True, repr=False, compare=False)  # a field changed since the last root

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "commits" and type(value) is not Tracked:
            value = Tracked(value)
        object.__setattr__(self, name, value)
        if name != "_dirty":
            object.__setattr__(self, "_dirty", True)

    @property
    def pending(self) -> int:
        return self.pending_owner + self.pending_miners + self.pending_validators

    def live_commits(self, hotkey: bytes) -> tuple[list[tuple[bytes, int, int]], list[bytes]]:
        """(unexpired commits, hashes of expired ones): a commit expires after epoch commit_epoch + reveal_period."""
        live, expired = [], []
        for cm in self.commits.get(hotkey, []):
            if self.epoch_index > cm[1] + self.hp.reveal_period:
                expired.append(cm[0])
            else:
                live.append(cm)
        return live, expired

    def _fields(self, neurons: Any, tail: list) -> list:
        """The layout a snapshot and the state tree share: `neurons` at index 6, then `tail` after index 9."""
        return [
            self.netuid,
            self.name,
            self.owner,
            self.created_at,
            self.hp.to_obj(),
            self.burn,
            neurons,
            [self.pending_owner, self.pending_miners, self.pending_validators],
            self.epoch_index,
            self.last_epoch_height,
            *tail,
        ]

    def to_obj(self) -> list:
        commits = [[hk, [list(c) for c in cs]] for hk, cs in sorted(self.commits.items())]
        return self._fields([n.to_obj() for n in self.neurons], [commits, self._regs()])

    def record(self, score: int) -> list:
        """The subnet's value in the state tree: its own fields, its neuron count and lifecycle score (§9)."""
        return self._fields(len(self.neurons), [self._regs(), score])

    def _regs(self) -> list[int]:
        return [self.regs_this_block, self.regs_this_interval, self.reg_interval_start]

    def neuron_record(self, uid: int) -> list:
        """A neuron's value in the state tree: its fields, then its hotkey's unrevealed commits (§9)."""
        n = self.neurons[uid]
        return [*n.to_obj(), [list(c) for c in self.commits.get(n.hotkey, [])]]

    @classmethod
    def from_obj(cls, o: list) -> Subnet:
        s = cls(
            o[0],
            o[1],
            o[2],
            o[3],
            Hyperparams.from_obj(o[4]),
            o[5],
            [Neuron.from_obj(n) for n in o[6]],
            o[7][0],
            o[7][1],
            o[7][2],
            o[8],
            o[9],
            {hk: [tuple(c) for c in cs] for hk, cs in o[10]},
        )
        s.regs_this_block, s.regs_this_interval, s.reg_interval_start = o[11]
        s.uid_of = {n.hotkey: uid for uid, n in enumerate(s.neurons)}
        return s


@dataclass(frozen=True, slots=True)
class Params:
    """Chain-wide constants fixed by genesis."""

    chain_id: str
    genesis_hash: bytes
    base_emission: int
    subnet_share: str
    epoch_rounds: int
    committee_size: int
    committee_min_stake: int
    subnet_min_burn: int
    subnet_burn_interval: int
    max_subnets: int
    genesis_committee: tuple[CommitteeMember, ...]
    subnet_immunity_period: int
    gov_deposit: int
    gov_voting_period: int
    gov_execution_delay: int
    gov_quorum_bps: int
    gov_threshold_bps: int
    slash_ppm: int
    reporter_reward_ppm: int
    tx_base_fee: int
    tx_byte_fee: int

    def to_obj(self) -> list:
        return [
            self.chain_id,
            self.genesis_hash,
            self.base_emission,
            self.subnet_share,
            self.epoch_rounds,
            self.committee_size,
            self.committee_min_stake,
            self.subnet_min_burn,
            self.subnet_burn_interval,
            self.max_subnets,
            _members_obj(self.genesis_committee),
            self.subnet_immunity_period,
            [self.gov_deposit, self.gov_voting_period, self.gov_execution_delay, self.gov_quorum_bps,
             self.gov_threshold_bps],
            self.slash_ppm,
            self.reporter_reward_ppm,
            [self.tx_base_fee, self.tx_byte_fee],
        ]

    @classmethod
    def from_obj(cls, o: list) -> Params:
        return cls(*o[:10], _members(o[10]), o[11], *o[12], *o[13:15], *o[15])


def _members_obj(members: Sequence[CommitteeMember]) -> list:
    return [[m.hotkey, m.stake, m.peer_id, list(m.multiaddrs)] for m in members]


def _members(o: list) -> tuple[CommitteeMember, ...]:
    return tuple(CommitteeMember(h, s, p, tuple(a)) for h, s, p, a in o)


def committee_digest(members: Sequence[CommitteeMember]) -> bytes:
    return crypto.digest(codec.encode(_members_obj(members)))


def epoch_seed(closing_commit_digest: bytes, members: Sequence[CommitteeMember]) -> bytes:
    """The next epoch's DAG seed: H(closing commit digest || committee digest) (spec/consensus.md §7)."""
    return crypto.digest(codec.encode(["tensornet/epoch/v1", closing_commit_digest, committee_digest(members)]))


def epoch_due(height: int, netuid: int, tempo: int) -> bool:
    """subtensor's schedule: a subnet's epoch runs where (height + netuid + 1) % (tempo + 1) == 0."""
    return (height + netuid + 1) % (tempo + 1) == 0


def next_epoch_height(height: int, netuid: int, tempo: int) -> int:
    """The first height strictly after `height` at which the subnet's epoch runs."""
    period = tempo + 1
    h = height + 1
    return h + (-(h + netuid + 1)) % period


class State:
    """The whole chain state. Changed only by protocol/state/transition.py and the handlers it dispatches to,
    through the ledger primitives; everything else reads."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.height = 0
        self.issued = 0
        self.burned = 0
        self.fees_burned = 0  # the part of `burned` that is transaction fees (spec/economics.md §6.2)
        self.balances: Tracked[bytes, int] = Tracked()
        self.nonces: Tracked[bytes, int] = Tracked()
        self.stakes: Tracked[tuple[bytes, bytes], int] = Tracked()  # (coldkey, hotkey) -> units
        self.hotkey_stake: dict[bytes, int] = {}  # derived: total stake on a hotkey (not in the root)
        self.hotkey_owner: Tracked[bytes, bytes] = Tracked()  # hotkey -> coldkey that owns it
        self.endpoints: Tracked[bytes, Endpoint] = Tracked()  # hotkey -> consensus endpoint (validators)
        self.subnets: Tracked[int, Subnet] = Tracked()
        self.subnet_last_price = 0
        self.subnet_last_height: int | None = None
        self.escrows = Escrows(open=Tracked())  # paid inference (protocol/state/escrow.py)
        self.lifecycle = Lifecycle(scores=Tracked())  # subnet scores and deregistrations (spec/economics.md §1)
        self.governance = Governance(proposals=Tracked())  # proposals, default hyperparameters (economics §2)
        # consensus epochs (spec/consensus.md §7): the committee that orders this epoch's blocks
        self.epoch = 0
        self.epoch_committee: tuple[CommitteeMember, ...] = params.genesis_committee
        self.prev_committee: tuple[CommitteeMember, ...] = ()  # the last epoch's, for late evidence
        self.epoch_seed = params.genesis_hash
        self.epoch_start = 1  # the first height of this epoch
        self.epoch_start_digest = bytes(32)  # the commit digest before epoch_start (the chain link)
        self.jailed: Tracked[bytes, int] = Tracked()  # hotkey -> epoch of its last offence: out of the next committee
        self.offences: TrackedSet[tuple[int, bytes]] = TrackedSet()  # (epoch, hotkey) already slashed
        # Transaction context, set by the transition function and never part of the root. fee_hold (check_tx
        # only): (signer, fee) set aside while the call is dry-run, so need_balance sees the balance the call
        # will see at apply time (after the fee).
        self.fee_hold: tuple[bytes, int] | None = None
        # tx_size: the signed size of the transaction being applied or checked, for claim_fee_of.
        self.tx_size = 0
        # The state tree and what its root has seen (spec/state.md §9). It keeps only the current root.
        self.tree = Tree(MemoryStore(), history=False)
        self._changed: set[bytes] = set()  # keys reported by changed_escrow / changed_proposal
        self._seen_globals: dict[str, tuple] = {}  # name -> the values its record was last encoded from
        self._seen_neurons: dict[int, int] = {}  # netuid -> neuron count under the root
        self._seen_history = 0  # deregistration records under the root
        # pid -> (the proposal's snapshot dict, the digest of its encoding): a snapshot is replaced, never changed
        # in place (taken at propose, emptied at the tally), so a vote does not re-encode every stake position
        self._snapshot_digests: dict[int, tuple[dict, bytes]] = {}

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_genesis(cls, g: Genesis) -> State:
        gc = tuple(
            CommitteeMember(
                c.hotkey, c.stake, c.endpoint.peer_id if c.endpoint else "", c.endpoint.multiaddrs if c.endpoint else ()
            )
            for c in g.committee
        )
        st = cls(
            Params(
                g.chain_id,
                g.hash(),
                g.base_emission,
                g.subnet_share,
                g.epoch_rounds,
                g.committee_size,
                g.committee_min_stake,
                g.subnet_min_burn,
                g.subnet_burn_interval,
                g.max_subnets,
                gc,
                g.subnet_immunity_period,
                g.gov_deposit,
                g.gov_voting_period,
                g.gov_execution_delay,
                g.gov_quorum_bps,
                g.gov_threshold_bps,
                g.slash_ppm,
                g.reporter_reward_ppm,
                g.tx_base_fee,
                g.tx_byte_fee,
            )
        )
        for key, amount in g.balances:
            st.balances[key] = amount
        for s in g.stakes:
            st.claim_hotkey(s.hotkey, s.coldkey)
            st.add_stake(s.coldkey, s.hotkey, s.amount)
        for c in g.committee:
            st.claim_hotkey(c.hotkey, c.coldkey)
            st.add_stake(c.coldkey, c.hotkey, c.stake)
            if c.endpoint is not None:
                st.endpoints[c.hotkey] = c.endpoint
        for i, s in enumerate(g.subnets):
            st.subnets[i + 1] = Subnet(i + 1, s.name, s.owner, 0, s.hyperparams, burn_start(s.hyperparams))
            st.lifecycle.scores[i + 1] = 0
        st.issued = g.issued()
        st.subnet_last_price = g.subnet_min_burn
        st._drop_zero_balances()
        return st

    def _drop_zero_balances(self) -> None:
        for k in [k for k, v in self.balances.items() if v == 0]:
            del self.balances[k]

    # --- queries --------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self.params.chain_id

    def next_nonce(self, pubkey: bytes) -> int:
        return self.nonces.get(pubkey, 0)

    def fee_of(self, stx: SignedTransaction, size: int | None = None) -> int:
        """The units `stx` burns when it applies (spec/economics.md §6); `size` defaults to its encoded length."""
        n = len(stx.to_bytes()) if size is None else size
        b = stx.body
        return tx_fee(n, b.call, b.signer, b.tip, self.params.tx_base_fee, self.params.tx_byte_fee)

    def claim_fee_of(self, signer: bytes, call: Any) -> int:
        """What the transaction being applied burns out of its claimed payment (protocol/fees.claim_fee)."""
        return claim_fee(self.tx_size, call, signer, self.params.tx_base_fee, self.params.tx_byte_fee)

    def account(self, pubkey: bytes) -> dict[str, Any]:
        """Balance, next nonce, stakes this key holds as a coldkey, and stake on it as a hotkey."""
        staked = {h: a for (c, h), a in sorted(self.stakes.items()) if c == pubkey}
        return {
            "balance": self.balances.get(pubkey, 0),
            "nonce": self.next_nonce(pubkey),
            "stakes": staked,
            "hotkey_stake": self.hotkey_stake.get(pubkey, 0),
            "hotkey_owner": self.hotkey_owner.get(pubkey),
        }

    def stake_of(self, coldkey: bytes, hotkey: bytes) -> int:
        return self.stakes.get((coldkey, hotkey), 0)

    def subnet(self, netuid: int) -> Subnet | None:
        return self.subnets.get(netuid)

    def subnet_price(self) -> int:
        """What create_subnet costs at the next height."""
        p = self.params
        return subnet_price(
            self.subnet_last_price, self.subnet_last_height, self.height + 1, p.subnet_min_burn, p.subnet_burn_interval
        )

    def subnet_price_at(self, height: int) -> int:
        """What create_subnet costs at `height`."""
        p = self.params
        return subnet_price(
            self.subnet_last_price, self.subnet_last_height, height, p.subnet_min_burn, p.subnet_burn_interval
        )

    def sorted_subnets(self) -> list[Subnet]:
        """The subnets in netuid order: every per-subnet step of a commit walks them in this order."""
        return [self.subnets[n] for n in sorted(self.subnets)]

    def metagraph(self, netuid: int) -> list[dict[str, Any]]:
        """One row per uid, in uid order; u16 figures as stored (x / 65535)."""
        sn = self.subnets.get(netuid)
        if sn is None:
            raise TxRejected("unknown subnet", f"subnet {netuid} does not exist")
        return [
            {
                "uid": uid,
                "hotkey": n.hotkey,
                "coldkey": n.coldkey,
                "stake": self.hotkey_stake.get(n.hotkey, 0),
                "rank": n.rank,
                "trust": n.trust,
                "consensus": n.consensus,
                "incentive": n.incentive,
                "dividends": n.dividends,
                "validator_trust": n.validator_trust,
                "emission": n.emission,
                "validator_permit": n.validator_permit,
                "last_update": n.last_update,
                "registered_at": n.registered_at,
                "axon": n.axon,
            }
            for uid, n in enumerate(sn.neurons)
        ]

    def committee(self) -> tuple[CommitteeMember, ...]:
        """The consensus committee for the next epoch (spec/state.md §Committee).

        Eligible: hotkeys with total stake >= committee_min_stake and a consensus endpoint (from genesis or
        serve_axon on netuid 0), not slashed for an offence during this epoch. The top committee_size by
        stake, ordered by stake descending then hotkey bytes ascending. If none is eligible, the genesis
        committee (so the chain never stalls).
        """
        p = self.params
        eligible = [
            (-stake, hk)
            for hk, stake in self.hotkey_stake.items()
            if stake >= p.committee_min_stake and hk in self.endpoints and self.jailed.get(hk, -1) < self.epoch
        ]
        eligible.sort()
        out = []
        for neg, hk in eligible[: p.committee_size]:
            ep = self.endpoints[hk]
            out.append(CommitteeMember(hk, -neg, ep.peer_id, ep.multiaddrs))
        return tuple(out) if out else p.genesis_committee

    def subnet_stake(self, sn: Subnet) -> int:
        """The total stake of the hotkeys registered on a subnet (a hotkey on several subnets counts in each)."""
        return sum(self.hotkey_stake.get(n.hotkey, 0) for n in sn.neurons)

    def subnet_immunity(self, sn: Subnet) -> int:
        """The first height at which the subnet can be replaced by a new one (spec/economics.md §1)."""
        return immune_until(sn.created_at, self.params.subnet_immunity_period)

    def total_stake(self) -> int:
        return sum(self.stakes.values())

    def total_pending(self) -> int:
        return sum(s.pending for s in self.subnets.values())

    def check_invariants(self) -> None:
        """Exact conservation and structural invariants; raises AssertionError naming the broken one."""
        sup = supply_of(self)  # the same identity GET /supply reports (protocol/state/supply.py)
        assert sup.balanced, f"conservation: held {sup.held} != issued {self.issued}"
        assert 0 <= self.fees_burned <= self.burned, "fees_burned outside [0, burned]"
        assert all(v > 0 for v in self.balances.values()), "a zero or negative balance is stored"
        assert all(v > 0 for v in self.stakes.values()), "a zero or negative stake is stored"
        totals: dict[bytes, int] = {}
        for (_, h), a in self.stakes.items():
            totals[h] = totals.get(h, 0) + a
        assert totals == {h: a for h, a in self.hotkey_stake.items() if a}, "hotkey totals out of sync"
        for sn in self.subnets.values():
            assert len(sn.neurons) <= sn.hp.max_allowed_uids, f"subnet {sn.netuid} over max uids"
            assert len({n.hotkey for n in sn.neurons}) == len(sn.neurons), f"subnet {sn.netuid}: duplicate hotkey"
            assert sn.uid_of == {n.hotkey: u for u, n in enumerate(sn.neurons)}, "uid index out of sync"
            sn.hp.check_all(len(sn.neurons))
            assert all(len(c) <= MAX_UNREVEALED_COMMITS for c in sn.commits.values()), "too many commits"
            assert 0 <= sn.regs_this_block <= sn.regs_this_interval, f"subnet {sn.netuid}: registration counters"
            assert sn.reg_interval_start <= self.height, f"subnet {sn.netuid}: interval starts in the future"
            assert all(n.registered_at <= n.served_at <= self.height for n in sn.neurons if n.served_at), (
                f"subnet {sn.netuid}: served_at outside [registered_at, height]"
            )
        self.escrows.check()
        assert sorted(self.lifecycle.scores) == sorted(self.subnets), "subnet scores out of sync"
        self.governance.check()

    # --- encoding, root, snapshot ---------------------------------------------------------------------

    def to_obj(self) -> list:
        """The snapshot's object (§9): the whole state in one canonical array."""
        return [
            SNAPSHOT_VERSION,
            self.params.to_obj(),
            self.height,
            self.issued,
            self.burned,
            [[k, v] for k, v in sorted(self.balances.items())],
            [[k, v] for k, v in sorted(self.nonces.items())],
            [[c, h, a] for (c, h), a in sorted(self.stakes.items())],
            [[h, c] for h, c in sorted(self.hotkey_owner.items())],
            [[h, e.to_obj()] for h, e in sorted(self.endpoints.items())],
            [self.subnets[n].to_obj() for n in sorted(self.subnets)],
            self.subnet_last_price,
            self.subnet_last_height,
            self.escrows.to_obj(),
            self.lifecycle.to_obj(),
            self.governance.to_obj(),
            [
                self.epoch,
                _members_obj(self.epoch_committee),
                _members_obj(self.prev_committee),
                self.epoch_seed,
                self.epoch_start,
                self.epoch_start_digest,
                [[h, e] for h, e in sorted(self.jailed.items())],
                [[e, h] for e, h in sorted(self.offences)],
            ],
            self.fees_burned,
        ]

    def root(self) -> bytes:
        """The state tree's root (spec/state.md §9), after re-encoding the keys written since the last root:
        O(changes x log n), plus one flag check per subnet and neuron."""
        changed = self._drain()
        if changed:
            self.tree.update({k: self.value_of(k) for k in changed})
        return self.tree.root

    def use_tree(self, store: NodeStore, root: bytes | None = None) -> None:
        """Keep the state tree's nodes in `store` (a node backs it with SQLite), before the first root().

        root None: `store` holds nothing of this state, and the next root() builds the tree in it from the whole
        state (O(n)). root given: `store` already holds this state's tree at `root` (a node restoring the snapshot
        it stored with that tree): the records are marked as seen, not re-encoded, so nothing is rebuilt. The
        caller vouches that `root` is this state's root (node/treestore.py checks it against the recorded commit)."""
        if self.tree.root != EMPTY:
            raise StateError("the state tree is already built: use_tree comes right after from_genesis or load")
        if root is not None:
            self._drain()  # what the loaded records are, as the root saw them; the keys themselves are not needed
        self.tree = Tree(store, EMPTY if root is None else root, history=False)

    def prove(self, key: bytes) -> tuple[bytes | None, Proof]:
        """The value under a typed key (None: absent) and its proof against `root()` (protocol/proof.verify)."""
        keys.parse(key)  # BadKeyError for bytes that are no state key
        self.root()
        return self.tree.prove(key)

    def value_of(self, key: bytes) -> bytes | None:
        """The canonical CBOR of the record under a typed key, read from the state (None: absent), per §9."""
        obj = self._record(*keys.parse(key))
        return None if obj is None else codec.encode(obj)

    def all_keys(self) -> Iterator[bytes]:
        """Every typed key that holds a record now (O(n)): what a tree built from nothing holds."""
        yield from (keys.global_(name) for name in GLOBALS)
        yield from (keys.account(k) for k in self.balances)
        yield from (keys.nonce(k) for k in self.nonces)
        yield from (keys.stake(h, c) for c, h in self.stakes)
        yield from (keys.hotkey(h) for h in set(self.hotkey_owner) | set(self.endpoints) | set(self.jailed))
        for netuid, sn in self.subnets.items():
            yield keys.subnet(netuid)
            yield from (keys.neuron(netuid, uid) for uid in range(len(sn.neurons)))
        yield from (keys.escrow(i) for i in self.escrows.open)
        yield from (keys.proposal(i) for i in self.governance.proposals)
        yield from (keys.lifecycle(i) for i in range(len(self.lifecycle.history)))

    def rebuild_root(self) -> bytes:
        """The root of a tree built from nothing from the whole state (O(n)), with no cache: what root() must equal."""
        cached, self._snapshot_digests = self._snapshot_digests, {}
        try:
            return Tree(MemoryStore()).update({k: self.value_of(k) for k in self.all_keys()})
        finally:
            self._snapshot_digests = cached

    def changed_escrow(self, escrow_id: int) -> None:
        """An open escrow changed in place (a claim): its key is re-encoded at the next root."""
        self._changed.add(keys.escrow(escrow_id))

    def changed_proposal(self, pid: int) -> None:
        """A proposal changed in place (a vote, its tally or execution): re-encoded at the next root."""
        self._changed.add(keys.proposal(pid))

    def _record(self, family: Family, f: tuple) -> Any:
        """The object encoded under a parsed key, or None if nothing is there."""
        if family is Family.GLOBAL:
            return self._global(f[0])
        if family is Family.ACCOUNT:
            return self.balances.get(f[0])
        if family is Family.NONCE:
            return self.nonces.get(f[0])
        if family is Family.STAKE:
            return self.stakes.get((f[1], f[0]))
        if family is Family.HOTKEY:
            hk = f[0]
            owner, ep, jailed = self.hotkey_owner.get(hk), self.endpoints.get(hk), self.jailed.get(hk)
            if owner is None and ep is None and jailed is None:
                return None
            return [owner, None if ep is None else ep.to_obj(), jailed]
        if family is Family.SUBNET or family is Family.NEURON:
            sn = self.subnets.get(f[0])
            if sn is None:
                return None
            if family is Family.SUBNET:
                return sn.record(self.lifecycle.scores.get(sn.netuid, 0))
            return sn.neuron_record(f[1]) if f[1] < len(sn.neurons) else None
        if family is Family.ESCROW:
            e = self.escrows.open.get(f[0])
            return None if e is None else e.to_obj()
        if family is Family.PROPOSAL:
            p = self.governance.proposals.get(f[0])
            return None if p is None else p.to_obj(self._snapshot_digest(p))
        hist = self.lifecycle.history
        return hist[f[0]].to_obj() if f[0] < len(hist) else None

    def _snapshot_digest(self, p: Proposal) -> bytes:
        """BLAKE2b-256 of the encoded stake positions of a proposal, computed once per snapshot."""
        cached = self._snapshot_digests.get(p.pid)
        if cached is not None and cached[0] is p.snapshot:
            return cached[1]
        digest = crypto.digest(codec.encode(p.snapshot_obj()))
        if p.snapshot:
            self._snapshot_digests[p.pid] = (p.snapshot, digest)
        else:
            self._snapshot_digests.pop(p.pid, None)
        return digest

    def _global(self, name: str) -> Any:
        """A chain-wide record by name (GLOBALS), or None for a name that holds none."""
        if name not in GLOBALS:
            return None
        if name == "offences":
            return [[e, h] for e, h in sorted(self.offences)]
        src = self._global_sources(name)
        if name == "params":
            return self.params.to_obj()
        if name == "epoch":
            return [src[0], _members_obj(src[1]), _members_obj(src[2]), *src[3:]]
        if name == "governance":
            return [src[0], src[1].to_obj()]
        return src[0] if len(src) == 1 else list(src)

    def _global_sources(self, name: str) -> tuple:
        """What a global record is encoded from: immutable values, compared to decide if it changed."""
        if name == "height":
            return (self.height,)
        if name == "supply":
            return (self.issued, self.burned, self.fees_burned)
        if name == "subnet_price":
            return (self.subnet_last_price, self.subnet_last_height)
        if name == "params":
            return (self.params,)
        if name == "epoch":
            return (self.epoch, self.epoch_committee, self.prev_committee, self.epoch_seed, self.epoch_start,
                    self.epoch_start_digest)  # fmt: skip
        if name == "escrows":
            return (self.escrows.next_id,)
        return (self.governance.next_id, self.governance.default_hp)

    def _drain(self) -> set[bytes]:
        """The typed keys written since the last root, with every write record reset."""
        out, self._changed = self._changed, set()
        out.update(keys.account(k) for k in self.balances.drain())
        out.update(keys.nonce(k) for k in self.nonces.drain())
        out.update(keys.stake(h, c) for c, h in self.stakes.drain())
        hot = self.hotkey_owner.drain() | self.endpoints.drain() | self.jailed.drain()
        out.update(keys.hotkey(h) for h in hot)
        for name in GLOBALS:
            if name == "offences":  # a set: its writes are recorded, as the maps' are
                if self.offences.drain() or name not in self._seen_globals:
                    self._seen_globals[name] = ()
                    out.add(keys.global_(name))
                continue
            src = self._global_sources(name)
            if self._seen_globals.get(name) != src:
                self._seen_globals[name] = src
                out.add(keys.global_(name))
        self._drain_subnets(out)
        out.update(keys.escrow(i) for i in self.escrows.open.drain())
        out.update(keys.proposal(i) for i in self.governance.proposals.drain())
        hist, seen = len(self.lifecycle.history), self._seen_history
        out.update(keys.lifecycle(i) for i in range(min(hist, seen), max(hist, seen)))
        self._seen_history = hist
        return out

    def _drain_subnets(self, out: set[bytes]) -> None:
        """Subnet and neuron keys: a subnet added or removed, one whose fields, score or neuron count changed,
        and each neuron that changed (its flag, or its hotkey's commits); the uids a subnet no longer has."""
        added_or_removed = self.subnets.drain()
        scored = self.lifecycle.scores.drain()
        for netuid in added_or_removed - self.subnets.keys():
            out.add(keys.subnet(netuid))
            out.update(keys.neuron(netuid, uid) for uid in range(self._seen_neurons.pop(netuid, 0)))
        for netuid, sn in self.subnets.items():
            n, had = len(sn.neurons), self._seen_neurons.get(netuid, 0)
            fresh = netuid in added_or_removed  # a new Subnet object: all of it is new
            if fresh or sn._dirty or netuid in scored or n != had:
                out.add(keys.subnet(netuid))
                sn._dirty = False
            for uid, nr in enumerate(sn.neurons):
                if fresh or nr._dirty:
                    out.add(keys.neuron(netuid, uid))
                    nr._dirty = False
            for hk in sn.commits.drain():
                uid = sn.uid_of.get(hk)
                if uid is not None:
                    out.add(keys.neuron(netuid, uid))
            out.update(keys.neuron(netuid, uid) for uid in range(n, had))
            self._seen_neurons[netuid] = n

    def snapshot(self) -> bytes:
        return codec.encode(self.to_obj())

    @classmethod
    def load(cls, data: bytes) -> State:
        """Inverse of snapshot(); the loaded state has the identical root."""
        try:
            o = codec.decode(data, max_size=_SNAPSHOT_MAX, max_items=1 << 24)
            if type(o) is not list or len(o) != 18 or o[0] != SNAPSHOT_VERSION:
                raise StateError("not a state snapshot of a known version")
            st = cls(Params.from_obj(o[1]))
            st.height, st.issued, st.burned = o[2], o[3], o[4]
            # Every container is a new Tracked: all its keys count as written, so the first root() builds the
            # tree from nothing (O(n), once at start-up).
            st.balances = Tracked((k, v) for k, v in o[5])
            st.nonces = Tracked((k, v) for k, v in o[6])
            for c, h, a in o[7]:
                st.stakes[(c, h)] = a
                st.hotkey_stake[h] = st.hotkey_stake.get(h, 0) + a
            st.hotkey_owner = Tracked((h, c) for h, c in o[8])
            st.endpoints = Tracked((h, Endpoint(e[0], tuple(e[1]))) for h, e in o[9])
            st.subnets = Tracked((s[0], Subnet.from_obj(s)) for s in o[10])
            st.subnet_last_price, st.subnet_last_height = o[11], o[12]
            st.escrows = Escrows.from_obj(o[13])
            st.escrows.open = Tracked(st.escrows.open)
            st.lifecycle = Lifecycle.from_obj(o[14])
            st.lifecycle.scores = Tracked(st.lifecycle.scores)
            st.governance = Governance.from_obj(o[15])
            st.governance.proposals = Tracked(st.governance.proposals)
            e = o[16]
            st.epoch, st.epoch_seed, st.epoch_start, st.epoch_start_digest = e[0], e[3], e[4], e[5]
            st.epoch_committee, st.prev_committee = _members(e[1]), _members(e[2])
            st.jailed = Tracked((h, ep) for h, ep in e[6])
            st.offences = TrackedSet((ep, h) for ep, h in e[7])
            st.fees_burned = o[17]
        except (ValueError, TypeError, IndexError, KeyError, DecodeError) as exc:
            raise StateError(f"corrupt state snapshot: {exc}") from None
        if st.snapshot() != bytes(data):
            raise StateError("state snapshot is not in canonical form")
        return st

    @classmethod
    def from_records(cls, items: Iterable[tuple[bytes, bytes]], positions: Mapping[bytes, bytes]) -> State:
        """The state whose tree holds exactly `items`, its (key, value) leaves (§9.1), and whose proposals' stake
        positions, which their records name only by digest, are `positions` (digest -> encoding; see positions()).

        The inverse of value_of over all_keys: a node rebuilds its state from the tree it stores (spec/state-tree.md
        §5.1). The order of `items` does not matter, and derived data (hotkey totals, uid indexes) is derived again.
        The containers count every key as written: use_tree(store, root) takes the tree they came from as it is,
        root() builds one from nothing. StateError for records that make no state; whether they are a whole tree
        is the caller's to vouch for (a node: the root it recorded; db check: rebuild_root() of the result)."""
        try:
            fam = _by_family(items)
            g = _globals(fam[Family.GLOBAL])
            st = cls(Params.from_obj(g["params"]))
            st._set_globals(g)
            st.balances = Tracked((f[0], _uint(v)) for f, v in fam[Family.ACCOUNT].items())
            st.nonces = Tracked((f[0], _uint(v)) for f, v in fam[Family.NONCE].items())
            for (h, c), v in fam[Family.STAKE].items():
                st.add_stake(c, h, _uint(v))
            for (h,), v in fam[Family.HOTKEY].items():
                owner, ep, jailed = codec.decode(v)
                if owner is not None:
                    st.hotkey_owner[h] = owner
                if ep is not None:
                    st.endpoints[h] = Endpoint(ep[0], tuple(ep[1]))
                if jailed is not None:
                    st.jailed[h] = jailed
            st._set_subnets(fam[Family.SUBNET], fam[Family.NEURON])
            st.escrows.open = Tracked(_numbered(fam[Family.ESCROW], Escrow.from_obj, "escrow_id"))
            st.governance.proposals = Tracked(_numbered(fam[Family.PROPOSAL], lambda o: _proposal(o, positions), "pid"))
            history = fam[Family.LIFECYCLE]
            st.lifecycle.history = [Deregistration.from_obj(codec.decode(history[(i,)])) for i in range(len(history))]
        except (ValueError, TypeError, IndexError, KeyError, DecodeError) as exc:
            raise StateError(f"state records that make no state: {type(exc).__name__} {exc}") from None
        return st

    def _set_globals(self, g: dict[str, Any]) -> None:
        """The chain-wide records (§9.1's GLOBAL rows), decoded."""
        self.height = g["height"]
        self.issued, self.burned, self.fees_burned = g["supply"]
        self.subnet_last_price, self.subnet_last_height = g["subnet_price"]
        e = g["epoch"]
        self.epoch, self.epoch_seed, self.epoch_start, self.epoch_start_digest = e[0], e[3], e[4], e[5]
        self.epoch_committee, self.prev_committee = _members(e[1]), _members(e[2])
        self.offences = TrackedSet((ep, h) for ep, h in g["offences"])
        self.escrows.next_id = g["escrows"]
        self.governance.next_id = g["governance"][0]
        self.governance.default_hp = Hyperparams.from_obj(g["governance"][1])

    def _set_subnets(self, subnets: dict[tuple, bytes], neurons: dict[tuple, bytes]) -> None:
        """Subnets from their records, each with its neurons (uids 0..count-1, each a record of its own holding its
        hotkey's unrevealed commits) and its lifecycle score."""
        for (netuid,), v in sorted(subnets.items()):
            r = codec.decode(v)
            recs = [codec.decode(neurons.pop((netuid, uid))) for uid in range(r[6])]
            commits = [[n[0], n[12]] for n in recs if n[12]]
            # the snapshot's layout (_fields): neurons at 6, then the commits and the registration counters
            sn = Subnet.from_obj([*r[:6], [n[:12] for n in recs], *r[7:10], commits, r[10]])
            if sn.netuid != netuid:
                raise ValueError(f"subnet record {netuid} holds netuid {sn.netuid}")
            self.subnets[netuid] = sn
            self.lifecycle.scores[netuid] = r[11]
        if neurons:
            raise ValueError(f"neuron records beyond their subnet's count: {sorted(neurons)[:3]}")

    def positions(self) -> dict[bytes, int]:
        """digest -> proposal id of each proposal's stake positions (the proposals still voting; a tally empties
        them): the only part of the state that its tree records by digest alone, so with the tree's leaves it
        makes the whole state (from_records). Cheap: each digest is computed once per proposal."""
        return {self._snapshot_digest(p): pid for pid, p in sorted(self.governance.proposals.items()) if p.snapshot}

    def encoded_positions(self, pid: int) -> bytes:
        """The encoding whose BLAKE2b-256 a proposal's record carries (O(positions))."""
        return codec.encode(self.governance.proposals[pid].snapshot_obj())

    # --- ledger primitives ----------------------------------------------------------------------------

    def credit(self, key: bytes, amount: int) -> None:
        """Add `amount` to `key`'s balance (zero stores nothing)."""
        if amount:
            self.balances[key] = self.balances.get(key, 0) + amount

    def debit(self, key: bytes, amount: int) -> None:
        """Take `amount` from `key`'s balance; the caller has checked it with need_balance."""
        left = self.balances.get(key, 0) - amount
        assert left >= 0, "debit below zero (a check is missing)"
        if left:
            self.balances[key] = left
        else:
            self.balances.pop(key, None)

    def add_stake(self, coldkey: bytes, hotkey: bytes, amount: int) -> None:
        """Grow the (coldkey, hotkey) position and the hotkey's total; moves no balance."""
        if amount:
            self.stakes[(coldkey, hotkey)] = self.stakes.get((coldkey, hotkey), 0) + amount
            self.hotkey_stake[hotkey] = self.hotkey_stake.get(hotkey, 0) + amount

    def sub_stake(self, coldkey: bytes, hotkey: bytes, amount: int) -> None:
        """Shrink the (coldkey, hotkey) position and the hotkey's total; the caller has checked the amount."""
        left = self.stakes.get((coldkey, hotkey), 0) - amount
        assert left >= 0, "unstake below zero (a check is missing)"
        if left:
            self.stakes[(coldkey, hotkey)] = left
        else:
            self.stakes.pop((coldkey, hotkey), None)
        total = self.hotkey_stake[hotkey] - amount
        if total:
            self.hotkey_stake[hotkey] = total
        else:
            del self.hotkey_stake[hotkey]

    def claim_hotkey(self, hotkey: bytes, coldkey: bytes) -> None:
        """Record `coldkey` as the owner of a fresh hotkey; TxRejected if another coldkey owns it."""
        owner = self.hotkey_owner.setdefault(hotkey, coldkey)
        if owner != coldkey:
            raise TxRejected("hotkey owner", f"hotkey {crypto.address(hotkey)} belongs to another coldkey")

    # --- checks the handlers share (each raises TxRejected naming its rule) ---------------------------------

    def need_amount(self, amount: int) -> None:
        """TxRejected('amount') unless `amount` is positive."""
        if amount <= 0:
            raise TxRejected("amount", "amount must be positive, got 0")

    def need_balance(self, who: bytes, amount: int, what: str) -> None:
        """TxRejected('balance') unless `who` can pay `amount` for `what`, after the fee held by check_tx."""
        have = self.balances.get(who, 0)
        if self.fee_hold is not None and self.fee_hold[0] == who:
            have -= self.fee_hold[1]
        if have < amount:
            raise TxRejected(
                "balance",
                f"{what} needs {format_tokens(amount)} but {crypto.address(who)} has {format_tokens(have)} "
                f"(short by {format_tokens(amount - have)})",
            )

    def need_subnet(self, netuid: int) -> Subnet:
        """The subnet `netuid`, or TxRejected naming the root or the existing subnets."""
        if netuid == ROOT_NETUID:
            raise TxRejected("root subnet", "netuid 0 is the root, not a subnet: it holds no neurons or weights")
        sn = self.subnets.get(netuid)
        if sn is None:
            known = ", ".join(str(n) for n in sorted(self.subnets)) or "none"
            raise TxRejected("unknown subnet", f"subnet {netuid} does not exist (subnets: {known})")
        return sn

    def need_uid(self, sn: Subnet, hotkey: bytes) -> int:
        """`hotkey`'s uid on `sn`, or TxRejected('not registered')."""
        uid = sn.uid_of.get(hotkey)
        if uid is None:
            raise TxRejected(
                "not registered", f"hotkey {crypto.address(hotkey)} is not registered on subnet {sn.netuid}"
            )
        return uid

_NO_POSITIONS = crypto.digest(codec.encode([]))  # what a proposal's record names once its tally emptied them
_UINT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}  # CBOR heads of an unsigned integer that follows in 1, 2, 4, 8 bytes


def _by_family(items: Iterable[tuple[bytes, bytes]]) -> dict[Family, dict[tuple, bytes]]:
    """Tree leaves grouped by key family: family -> {parsed key fields: value}; BadKeyError for a key of no family."""
    out: dict[Family, dict[tuple, bytes]] = {f: {} for f in Family}
    for key, value in items:
        family, fields = keys.parse(key)
        out[family][fields] = value
    return out


def _globals(records: dict[tuple, bytes]) -> dict[str, Any]:
    """The GLOBAL records by name, decoded; ValueError unless they are exactly GLOBALS."""
    if sorted(f[0] for f in records) != sorted(GLOBALS):
        raise ValueError(f"global records {sorted(f[0] for f in records)}, a state has {sorted(GLOBALS)}")
    return {f[0]: codec.decode(v) for f, v in records.items()}


def _numbered(records: dict[tuple, bytes], from_obj: Any, id_field: str) -> list[tuple[int, Any]]:
    """(id, object) of records keyed by an id that the object holds too (escrows, proposals), in id order."""
    out = []
    for (i,), v in sorted(records.items()):
        obj = from_obj(codec.decode(v))
        if getattr(obj, id_field) != i:
            raise ValueError(f"the record under id {i} holds {id_field} {getattr(obj, id_field)}")
        out.append((i, obj))
    return out


def _proposal(o: list, positions: Mapping[bytes, bytes]) -> Proposal:
    """A proposal from its tree record, its stake positions (named there by digest) taken from `positions`."""
    digest = o[7]
    if digest == _NO_POSITIONS:
        return Proposal.from_obj([*o[:7], [], *o[8:]])
    raw = positions.get(digest)
    if raw is None or crypto.digest(raw) != digest:
        raise StateError(f"proposal {o[0]}: its stake positions {bytes(digest).hex()[:16]}… are "
                         f"{'missing' if raw is None else 'damaged'}")
    return Proposal.from_obj([*o[:7], codec.decode(raw, max_size=_SNAPSHOT_MAX, max_items=1 << 24), *o[8:]])


def _uint(value: bytes) -> int:
    """A record that is one unsigned integer (a balance, nonce or stake: most of a large state), read without the
    general decoder's ~6 us a call; anything but a canonical unsigned integer goes through codec.decode instead."""
    head = value[0] if value else 0
    if head < 24 and len(value) == 1:
        return head
    n = _UINT_BYTES.get(head)
    if n is not None and len(value) == 1 + n:
        x = int.from_bytes(value[1:], "big")
        if x >= (24 if n == 1 else 1 << (4 * n)):  # the shortest head (canonical form), as codec.decode insists
            return x
    x = codec.decode(value)
    if type(x) is not int or x < 0:
        raise ValueError(f"an amount record holds {type(x).__name__} {x!r}")
    return x


def supply_of(st: State) -> Supply:
    """The state's supply breakdown (O(accounts + stakes + escrows + proposals + subnets)): the one computation
    of the conservation identity, for check_invariants, `GET /supply` and `tensornet chain supply`."""
    return Supply(
        height=st.height,
        issued=st.issued,
        burned=st.burned,
        fees_burned=st.fees_burned,
        balances=sum(st.balances.values()),
        stake=st.total_stake(),
        escrow=st.escrows.total(),
        deposits=st.governance.escrowed(),
        pending=st.total_pending(),
    )


def fee_text(fee: int, balance: int) -> str:
    """'fee 0.0003 token (300000 units), balance 0.0001 token (100000 units)': one line for people."""

    def tok(units: int) -> str:
        whole, frac = divmod(units, UNIT)
        return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(whole)

    return f"fee {tok(fee)} token ({fee} units), balance {tok(balance)} token ({balance} units)"


def burn_start(hp: Hyperparams) -> int:
    return max(hp.min_burn, min(hp.max_burn, INITIAL_BURN))


__all__ = [
    "State",
    "CommitteeMember",
    "Neuron",
    "Subnet",
    "Params",
    "epoch_due",
    "next_epoch_height",
    "ROOT_NETUID",
]
