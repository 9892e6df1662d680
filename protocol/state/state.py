"""The chain state machine: accounts, stake, subnets, neurons, weights, emission, committee.

Pure and deterministic: the same genesis and the same committed transactions give the same state
root on every machine. spec/state.md is normative. Public API for the node:

    State.from_genesis(genesis) -> State
    state.apply_commit(height, txs, *, verified=frozenset()) -> list[Receipt]
        height must be state.height + 1 (the first commit is height 1). Each tx (SignedTransaction
        bytes) is decoded, chain-checked, signature-checked (skipped when its digest is in
        `verified`), nonce-checked, then applied or refused; a refusal is a Receipt with ok=False
        and the rule. Then this height's emission is minted and due subnet epochs run.
    state.check_tx(stx, *, allow_future_nonce=False) -> None    (mempool; raises TxRejected, no change)
    state.root() -> bytes;  state.snapshot() -> bytes;  State.load(data) -> State
    state.account(pubkey), state.subnet(netuid), state.metagraph(netuid), state.committee(),
    state.next_nonce(pubkey)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import codec, crypto
from protocol.economics import yuma
from protocol.economics.emission import UNIT, apportion, block_emission, format_tokens, subnet_split, take
from protocol.economics.fees import claim_fee, tx_fee
from protocol.economics.hyperparams import U16_MAX, Hyperparams
from protocol.economics.pricing import bumped_burn, decayed_burn, subnet_price
from protocol.economics.weights import (
    MAX_UNREVEALED_COMMITS,
    first_duplicate,
    is_self_weight,
    max_weight_exceeded,
    upscale,
    weights_commit_hash,
)
from protocol.errors import DecodeError, ProtocolError, StateError, TxRejected, WrongChainError
from protocol.messages import (
    AddStake,
    ClaimPayment,
    CloseEscrow,
    CommitWeights,
    CreateSubnet,
    OpenEscrow,
    Propose,
    Register,
    RemoveStake,
    ReportEquivocation,
    RevealWeights,
    ServeAxon,
    SetHyperparameter,
    SetWeights,
    SignedTransaction,
    Transfer,
    Vote,
)
from protocol.state import escrow, governance, lifecycle, slashing
from protocol.state.escrow import Escrows
from protocol.state.genesis import Endpoint, Genesis
from protocol.state.supply import supply_of

ROOT_NETUID = 0  # not a subnet: serve_axon on netuid 0 announces a validator's consensus endpoint
INITIAL_BURN = 100_000_000  # subtensor's InitialBurn: 0.1 token
SNAPSHOT_VERSION = 9  # 2: escrows; 3: registration counters, served_at; 4: lifecycle; 5: governance; 6: epochs
# 7: transaction fee parameters; 8: fees_burned; 9: proposals snapshot stake positions (delegated votes)
_SNAPSHOT_MAX = 1 << 34
_PEER_ID_CHARS = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")  # base58btc


@dataclass(frozen=True, slots=True)
class Receipt:
    """What happened to one transaction of a commit. `digest` is the SignedTransaction digest
    (BLAKE2b-256 of the raw bytes when they did not decode)."""

    digest: bytes
    ok: bool
    rule: str = ""
    message: str = ""
    signer: bytes | None = None
    nonce: int | None = None

    @property
    def executed(self) -> bool:
        """It passed the envelope: its nonce is consumed and its fee paid, whatever its call did."""
        return self.ok or self.rule not in ENVELOPE_RULES


ENVELOPE_RULES = frozenset({"decode", "duplicate", "chain id", "nonce", "fee", "signature"})  # spec/state.md §3


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
    _digest: bytes | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Any change drops the cached digest, so the root never reads a stale one.
        object.__setattr__(self, name, value)
        if name != "_digest":
            object.__setattr__(self, "_digest", None)

    def digest(self) -> bytes:
        """BLAKE2b-256 of the neuron's canonical encoding, cached until the neuron changes."""
        if self._digest is None:
            object.__setattr__(self, "_digest", crypto.digest(codec.encode(self.to_obj())))
        return self._digest

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
    # hotkey -> unrevealed commits, oldest first: (hash, epoch_index, height)
    commits: dict[bytes, list[tuple[bytes, int, int]]] = field(default_factory=dict)
    uid_of: dict[bytes, int] = field(default_factory=dict)
    # Registration caps (§3): registrations at the current height (reset at the start of each commit) and
    # since reg_interval_start (reset once adjustment_interval heights have passed).
    regs_this_block: int = 0
    regs_this_interval: int = 0
    reg_interval_start: int = 0

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

    def to_obj(self, *, neurons: bool = True) -> list:
        return [
            self.netuid,
            self.name,
            self.owner,
            self.created_at,
            self.hp.to_obj(),
            self.burn,
            [n.to_obj() for n in self.neurons] if neurons else None,
            [self.pending_owner, self.pending_miners, self.pending_validators],
            self.epoch_index,
            self.last_epoch_height,
            [[hk, [list(c) for c in cs]] for hk, cs in sorted(self.commits.items())],
            [self.regs_this_block, self.regs_this_interval, self.reg_interval_start],
        ]

    def root_obj(self) -> list:
        """to_obj with each neuron replaced by its digest: the root re-encodes only changed neurons."""
        obj = self.to_obj(neurons=False)
        obj[6] = [n.digest() for n in self.neurons]
        return obj

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
    """The whole chain state. Mutated only by apply_commit; everything else reads."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.height = 0
        self.issued = 0
        self.burned = 0
        self.fees_burned = 0  # the part of `burned` that is transaction fees (spec/economics.md §6.2)
        self.balances: dict[bytes, int] = {}
        self.nonces: dict[bytes, int] = {}
        self.stakes: dict[tuple[bytes, bytes], int] = {}  # (coldkey, hotkey) -> units
        self.hotkey_stake: dict[bytes, int] = {}  # derived: total stake on a hotkey
        self.hotkey_owner: dict[bytes, bytes] = {}  # hotkey -> coldkey that owns it
        self.endpoints: dict[bytes, Endpoint] = {}  # hotkey -> consensus endpoint (validators)
        self.subnets: dict[int, Subnet] = {}
        self.subnet_last_price = 0
        self.subnet_last_height: int | None = None
        self.escrows = Escrows()  # paid inference (protocol/state/escrow.py)
        self.lifecycle = lifecycle.Lifecycle()  # subnet scores and deregistrations (spec/economics.md §1)
        self.governance = governance.Governance()  # proposals, default hyperparameters (spec/economics.md §2)
        # consensus epochs (spec/consensus.md §7): the committee that orders this epoch's blocks
        self.epoch = 0
        self.epoch_committee: tuple[CommitteeMember, ...] = params.genesis_committee
        self.prev_committee: tuple[CommitteeMember, ...] = ()  # the last epoch's, for late evidence
        self.epoch_seed = params.genesis_hash
        self.epoch_start = 1  # the first height of this epoch
        self.epoch_start_digest = bytes(32)  # the commit digest before epoch_start (the chain link)
        self.jailed: dict[bytes, int] = {}  # hotkey -> epoch of its last offence: left out of the next committee
        self.offences: set[tuple[int, bytes]] = set()  # (epoch, hotkey) already slashed
        # Transaction context, set by the transition function and never part of the root. fee_hold (check_tx
        # only): (signer, fee) set aside while the call is dry-run, so need_balance sees the balance the call
        # will see at apply time (after the fee).
        self.fee_hold: tuple[bytes, int] | None = None
        # tx_size: the signed size of the transaction being applied or checked, for claim_fee_of.
        self.tx_size = 0

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
        return lifecycle.immune_until(sn.created_at, self.params.subnet_immunity_period)

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

    def to_obj(self, *, for_root: bool = False) -> list:
        subnets = [self.subnets[n].root_obj() if for_root else self.subnets[n].to_obj() for n in sorted(self.subnets)]
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
            subnets,
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
        """BLAKE2b-256 of the canonical CBOR of the state, each neuron standing as its own digest."""
        return crypto.digest(codec.encode(self.to_obj(for_root=True)))

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
            st.balances = {k: v for k, v in o[5]}
            st.nonces = {k: v for k, v in o[6]}
            for c, h, a in o[7]:
                st.stakes[(c, h)] = a
                st.hotkey_stake[h] = st.hotkey_stake.get(h, 0) + a
            st.hotkey_owner = {h: c for h, c in o[8]}
            st.endpoints = {h: Endpoint(e[0], tuple(e[1])) for h, e in o[9]}
            st.subnets = {s[0]: Subnet.from_obj(s) for s in o[10]}
            st.subnet_last_price, st.subnet_last_height = o[11], o[12]
            st.escrows = Escrows.from_obj(o[13])
            st.lifecycle = lifecycle.Lifecycle.from_obj(o[14])
            st.governance = governance.Governance.from_obj(o[15])
            e = o[16]
            st.epoch, st.epoch_seed, st.epoch_start, st.epoch_start_digest = e[0], e[3], e[4], e[5]
            st.epoch_committee, st.prev_committee = _members(e[1]), _members(e[2])
            st.jailed = {h: ep for h, ep in e[6]}
            st.offences = {(ep, h) for ep, h in e[7]}
            st.fees_burned = o[17]
        except (ValueError, TypeError, IndexError, KeyError, DecodeError) as exc:
            raise StateError(f"corrupt state snapshot: {exc}") from None
        if st.snapshot() != bytes(data):
            raise StateError("state snapshot is not in canonical form")
        return st

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

    # --- commits ----------------------------------------------------------------------------------------

    def apply_commit(
        self,
        height: int,
        txs: Sequence[bytes],
        *,
        verified: frozenset[bytes] = frozenset(),
        leader_round: int | None = None,
        commit_digest: bytes = bytes(32),
    ) -> list[Receipt]:
        """Apply one committed sub-DAG's transactions in order, then mint and run due epochs.

        `leader_round` and `commit_digest` are the commit's (the driver passes them): a commit whose
        leader round reaches `epoch_rounds` closes the consensus epoch (spec/consensus.md §7)."""
        if height != self.height + 1:
            raise StateError(f"commit height {height} out of order: state is at height {self.height}")
        self.height = height
        for sn in self.sorted_subnets():
            sn.burn = decayed_burn(sn.burn, sn.hp.burn_half_life, sn.hp.min_burn, sn.hp.max_burn)
            sn.regs_this_block = 0
            if height - sn.reg_interval_start >= sn.hp.adjustment_interval:
                sn.reg_interval_start, sn.regs_this_interval = height, 0
        receipts: list[Receipt] = []
        seen: set[bytes] = set()
        for raw in txs:
            receipts.append(self._apply_raw(bytes(raw), verified, seen))
        governance.end_of_height(self)
        self.lifecycle.update_scores({sn.netuid: self.subnet_stake(sn) for sn in self.sorted_subnets()})
        self._mint()
        for sn in self.sorted_subnets():
            if epoch_due(height, sn.netuid, sn.hp.tempo):
                self._run_epoch(sn)
        if leader_round is not None and leader_round >= self.params.epoch_rounds:
            self._close_epoch(commit_digest)
        return receipts

    def _close_epoch(self, closing_digest: bytes) -> None:
        """The next consensus epoch: a fresh DAG under the committee chosen by stake now."""
        nxt = self.committee()
        self.prev_committee = self.epoch_committee
        self.epoch_committee = nxt
        self.epoch += 1
        self.epoch_seed = epoch_seed(closing_digest, nxt)
        self.epoch_start = self.height + 1
        self.epoch_start_digest = closing_digest

    def sorted_subnets(self) -> list[Subnet]:
        """The subnets in netuid order: every per-subnet step of a commit walks them in this order."""
        return [self.subnets[n] for n in sorted(self.subnets)]

    def _apply_raw(self, raw: bytes, verified: frozenset[bytes], seen: set[bytes]) -> Receipt:
        try:
            stx = SignedTransaction.from_bytes(raw)
        except DecodeError as exc:
            return Receipt(crypto.digest(raw), False, "decode", str(exc))
        dg = stx.digest
        tx = stx.body
        if dg in seen:
            return Receipt(dg, False, "duplicate", "transaction already executed in this commit", tx.signer, tx.nonce)
        seen.add(dg)
        try:
            fee = self._check_envelope(stx, len(raw), check_sig=dg not in verified, allow_future_nonce=False)
        except TxRejected as exc:
            return Receipt(dg, False, exc.rule, str(exc), tx.signer, tx.nonce)
        self.nonces[tx.signer] = tx.nonce + 1
        self.debit(tx.signer, fee)  # burned whether or not the call succeeds (spec/state.md §3)
        self.burned += fee
        self.fees_burned += fee
        self.tx_size = len(raw)
        try:
            self._dispatch(tx.signer, tx.call, dry=False)
        except TxRejected as exc:
            return Receipt(dg, False, exc.rule, str(exc), tx.signer, tx.nonce)
        return Receipt(dg, True, signer=tx.signer, nonce=tx.nonce)

    def check_tx(self, stx: SignedTransaction, *, allow_future_nonce: bool = False, size: int | None = None) -> None:
        """Mempool admission: raise TxRejected if `stx` would be refused now; never changes state.

        With allow_future_nonce, a nonce above the next one passes the envelope checks and the call
        checks are skipped (they depend on the transactions before it). The call is judged against the
        balance left after the fee, as at apply time. `size` is the signed length when the caller holds the
        bytes (canonical decoding makes it the encoded length), saving a re-encode per admission."""
        size = len(stx.to_bytes()) if size is None else size
        fee = self._check_envelope(stx, size, check_sig=True, allow_future_nonce=allow_future_nonce)
        if stx.body.nonce == self.next_nonce(stx.body.signer):
            self.fee_hold = (stx.body.signer, fee)
            self.tx_size = size
            try:
                self._dispatch(stx.body.signer, stx.body.call, dry=True)
            finally:
                self.fee_hold = None

    def _check_envelope(
        self, stx: SignedTransaction, size: int | None, *, check_sig: bool, allow_future_nonce: bool
    ) -> int:
        """Chain id, nonce, the fee the signer must be able to pay, then the signature; returns the fee.

        The signature comes last because it is the one costly check (~50 us): a flood of transactions from
        keys that hold nothing, or with spent nonces, is refused by two lookups. Any failure skips the
        transaction, so the order changes only which rule a refusal names."""
        tx = stx.body
        if tx.chain_id != self.chain_id:
            raise TxRejected("chain id", f"transaction is for chain {tx.chain_id!r}, this chain is {self.chain_id!r}")
        nxt = self.next_nonce(tx.signer)
        if tx.nonce < nxt:
            raise TxRejected("nonce", f"nonce {tx.nonce} is already used (next is {nxt}): a replay or stale")
        if tx.nonce > nxt and not allow_future_nonce:
            raise TxRejected(
                "nonce",
                f"nonce {tx.nonce} is ahead of the next nonce {nxt}; it can apply after nonces {nxt}..{tx.nonce - 1}",
            )
        fee = self.fee_of(stx, size)
        have = self.balances.get(tx.signer, 0)
        if have < fee:
            raise TxRejected("fee", f"{fee_text(fee, have)} (short by {fee - have} units)")
        if check_sig:
            try:
                stx.verify(self.chain_id)
            except (WrongChainError, ProtocolError) as exc:
                raise TxRejected("signature", str(exc)) from None
        return fee

    def _dispatch(self, signer: bytes, call: Any, *, dry: bool) -> None:
        handler = _HANDLERS.get(type(call))
        if handler is None:  # pragma: no cover - every Call type has a handler
            raise TxRejected("unknown call", f"no handler for {type(call).__name__}")
        handler(self, signer, call, dry)

    # --- transactions -----------------------------------------------------------------------------------

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

    def _tx_transfer(self, signer: bytes, c: Transfer, dry: bool) -> None:
        self.need_amount(c.amount)
        self.need_balance(signer, c.amount, "transfer")
        if dry:
            return
        self.debit(signer, c.amount)
        self.credit(c.dest, c.amount)

    def _tx_add_stake(self, signer: bytes, c: AddStake, dry: bool) -> None:
        self.need_amount(c.amount)
        self.need_balance(signer, c.amount, "add_stake")
        if dry:
            return
        self.hotkey_owner.setdefault(c.hotkey, signer)  # the first staker of a fresh hotkey owns it
        self.debit(signer, c.amount)
        self.add_stake(signer, c.hotkey, c.amount)

    def _tx_remove_stake(self, signer: bytes, c: RemoveStake, dry: bool) -> None:
        self.need_amount(c.amount)
        have = self.stake_of(signer, c.hotkey)
        if have < c.amount:
            raise TxRejected(
                "stake",
                f"remove_stake of {format_tokens(c.amount)} but {crypto.address(signer)} has {format_tokens(have)} "
                f"staked on {crypto.address(c.hotkey)} (short by {format_tokens(c.amount - have)})",
            )
        if dry:
            return
        self.sub_stake(signer, c.hotkey, c.amount)
        self.credit(signer, c.amount)

    def _tx_create_subnet(self, signer: bytes, c: CreateSubnet, dry: bool) -> None:
        if not c.name.strip():
            raise TxRejected("subnet name", "subnet name must not be blank")
        victims = lifecycle.subnets_to_replace(
            [lifecycle.SubnetInfo(n, sn.created_at, self.lifecycle.scores.get(n, 0)) for n, sn in self.subnets.items()],
            height=self.height,
            max_subnets=self.params.max_subnets,
            immunity_period=self.params.subnet_immunity_period,
        )
        price = self.subnet_price_at(self.height)
        if price > c.max_burn:
            raise TxRejected(
                "price limit",
                f"subnet price is {price}, above max_burn {c.max_burn}; "
                "the price falls each height until it reaches the floor",
            )
        self.need_balance(signer, price, "create_subnet")
        if dry:
            return
        for victim in victims:
            lifecycle.deregister(self, victim, signer)
        netuid = next(n for n in range(1, 65536) if n not in self.subnets)
        self.debit(signer, price)
        self.burned += price
        self.subnet_last_price, self.subnet_last_height = price, self.height
        hp = self.governance.default_hp
        self.subnets[netuid] = Subnet(
            netuid, c.name, signer, self.height, hp, burn_start(hp), reg_interval_start=self.height
        )
        self.lifecycle.scores[netuid] = 0

    def subnet_price_at(self, height: int) -> int:
        p = self.params
        return subnet_price(
            self.subnet_last_price, self.subnet_last_height, height, p.subnet_min_burn, p.subnet_burn_interval
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

    def _registration_caps(self, sn: Subnet, dry: bool) -> None:
        """subtensor's burned-registration caps: fewer than max_registrations_per_block at this height and
        fewer than 3 x target_registrations_per_interval since the interval began (65535: no cap). A dry
        run (mempool) judges the next height, as apply_commit's step 1 will leave the counters there."""
        hp = sn.hp
        at, in_block = self.height, sn.regs_this_block
        start, in_interval = sn.reg_interval_start, sn.regs_this_interval
        if dry:
            at, in_block = self.height + 1, 0
            if at - start >= hp.adjustment_interval:
                start, in_interval = at, 0
        cap = hp.max_registrations_per_block
        if cap != U16_MAX and in_block >= cap:
            when = f"next allowed at height {at + 1}" if cap else "closed until the subnet owner raises it"
            raise TxRejected(
                "registrations per block",
                f"{in_block} registrations on subnet {sn.netuid} at height {at}, "
                f"max_registrations_per_block is {cap}; {when}",
            )
        target = hp.target_registrations_per_interval
        if target != U16_MAX and in_interval >= 3 * target:
            nxt = max(start + hp.adjustment_interval, at + 1)
            when = f"next allowed at height {nxt}" if target else "closed until the subnet owner raises it"
            raise TxRejected(
                "registrations per interval",
                f"{in_interval} registrations on subnet {sn.netuid} since height {start}, limit 3 x "
                f"target_registrations_per_interval {target} = {3 * target} per {hp.adjustment_interval} "
                f"heights (adjustment_interval); {when}, now {at}",
            )

    def _tx_register(self, signer: bytes, c: Register, dry: bool) -> None:
        sn = self.need_subnet(c.netuid)
        self._registration_caps(sn, dry)
        if c.hotkey in sn.uid_of:
            raise TxRejected(
                "already registered",
                f"hotkey {crypto.address(c.hotkey)} already has uid {sn.uid_of[c.hotkey]} on subnet {c.netuid}",
            )
        owner = self.hotkey_owner.get(c.hotkey, signer)
        if owner != signer:
            raise TxRejected(
                "hotkey owner",
                f"hotkey {crypto.address(c.hotkey)} belongs to coldkey {crypto.address(owner)}, not the signer",
            )
        price = sn.burn
        if price > c.max_burn:
            raise TxRejected(
                "price limit",
                f"registration burn on subnet {c.netuid} is {price}, above max_burn "
                f"{c.max_burn}; it halves every {sn.hp.burn_half_life} heights",
            )
        self.need_balance(signer, price, "register")
        prune = None
        if len(sn.neurons) >= sn.hp.max_allowed_uids:
            prune = self._neuron_to_prune(sn)
            if prune is None:
                raise TxRejected("subnet full", f"subnet {c.netuid} has {len(sn.neurons)} uids and none can be pruned")
        if dry:
            return
        self.hotkey_owner.setdefault(c.hotkey, signer)
        self.debit(signer, price)
        self.burned += price
        neuron = Neuron(c.hotkey, signer, self.height)
        if prune is None:
            sn.uid_of[c.hotkey] = len(sn.neurons)
            sn.neurons.append(neuron)
        else:
            old = sn.neurons[prune]
            del sn.uid_of[old.hotkey]
            sn.commits.pop(old.hotkey, None)
            sn.neurons[prune] = neuron
            sn.uid_of[c.hotkey] = prune
        sn.burn = bumped_burn(sn.burn, sn.hp.min_burn, sn.hp.max_burn)
        sn.regs_this_block += 1
        sn.regs_this_interval += 1

    def _neuron_to_prune(self, sn: Subnet) -> int | None:
        """subtensor's get_neuron_to_prune: lowest emission, then earliest registration, then lowest uid;
        non-immune uids first while more than min_non_immune_uids of them remain, else immune ones."""
        best_free: tuple[int, int, int] | None = None
        best_immune: tuple[int, int, int] | None = None
        free = 0
        for uid, n in enumerate(sn.neurons):
            key = (n.emission, n.registered_at, uid)
            if self.height - n.registered_at < sn.hp.immunity_period:
                best_immune = key if best_immune is None or key < best_immune else best_immune
            else:
                free += 1
                best_free = key if best_free is None or key < best_free else best_free
        if best_free is not None and free > sn.hp.min_non_immune_uids:
            return best_free[2]
        return None if best_immune is None else best_immune[2]

    def _tx_serve_axon(self, signer: bytes, c: ServeAxon, dry: bool) -> None:
        if not c.peer_id or not set(c.peer_id) <= _PEER_ID_CHARS:
            raise TxRejected("peer id", f"peer id {c.peer_id!r} is not a base58 libp2p peer id")
        for i, a in enumerate(c.multiaddrs):
            if not a.startswith("/") or any(ch.isspace() for ch in a):
                raise TxRejected("multiaddr", f"multiaddrs[{i}] = {a!r} is not a multiaddr")
        ep = Endpoint(c.peer_id, tuple(c.multiaddrs))
        if c.netuid == ROOT_NETUID:
            stake = self.hotkey_stake.get(signer, 0)
            if stake == 0:
                raise TxRejected(
                    "not staked",
                    f"hotkey {crypto.address(signer)} has no stake; a consensus "
                    "endpoint is for validators (stake first)",
                )
            if not dry:
                self.endpoints[signer] = ep
            return
        sn = self.need_subnet(c.netuid)
        neuron = sn.neurons[self.need_uid(sn, signer)]
        now, limit, last = self.height + 1 if dry else self.height, sn.hp.serving_rate_limit, neuron.served_at
        if limit and last and now - last < limit:
            raise TxRejected(
                "serving rate limit",
                f"axon last served at height {last}, next allowed at {last + limit}, now {now} "
                f"(serving_rate_limit {limit} on subnet {sn.netuid})",
            )
        if not dry:
            neuron.axon, neuron.served_at = ep, self.height

    def need_uid(self, sn: Subnet, hotkey: bytes) -> int:
        """`hotkey`'s uid on `sn`, or TxRejected('not registered')."""
        uid = sn.uid_of.get(hotkey)
        if uid is None:
            raise TxRejected(
                "not registered", f"hotkey {crypto.address(hotkey)} is not registered on subnet {sn.netuid}"
            )
        return uid

    def _check_weights(
        self, sn: Subnet, hotkey: bytes, uids: Sequence[int], values: Sequence[int], version_key: int, *, reveal: bool
    ) -> int:
        """subtensor's do_set_weights checks, in its order; returns the signer's uid."""
        if len(uids) != len(values):
            raise TxRejected("weights length", f"{len(uids)} uids but {len(values)} values")
        n = len(sn.neurons)
        if len(uids) > n:
            raise TxRejected("too many weights", f"{len(uids)} weights but subnet {sn.netuid} has {n} uids")
        uid = self.need_uid(sn, hotkey)
        stake = self.hotkey_stake.get(hotkey, 0)
        if stake < sn.hp.weights_min_stake:
            raise TxRejected(
                "weights min stake", f"hotkey stake {stake} is below weights_min_stake {sn.hp.weights_min_stake}"
            )
        want = sn.hp.weights_version_key
        if want != 0 and version_key < want:
            raise TxRejected("version key", f"version_key {version_key} is below the subnet's {want}; upgrade")
        neuron = sn.neurons[uid]
        if not sn.hp.commit_reveal_enabled and neuron.last_update:
            nxt = neuron.last_update + sn.hp.weights_rate_limit
            if self.height < nxt:
                raise TxRejected(
                    "weights rate limit",
                    f"last set at height {neuron.last_update}, next allowed at {nxt}, now {self.height}",
                )
        selfw = is_self_weight(uid, uids, values)
        if not selfw and not neuron.validator_permit:
            raise TxRejected(
                "validator permit",
                f"uid {uid} has no validator permit (permits go to the top "
                f"{sn.hp.max_allowed_validators} by stake at each epoch); only a lone self-weight is allowed",
            )
        dup = first_duplicate(uids)
        if dup is not None:
            raise TxRejected("duplicate uids", f"uid {dup} appears more than once")
        bad = [u for u in uids if u >= n]
        if bad:
            raise TxRejected("invalid uids", f"uid {bad[0]} does not exist on subnet {sn.netuid} (uids 0..{n - 1})")
        need = min(sn.hp.min_allowed_weights, n)
        if not selfw and len(values) < need:
            raise TxRejected("min allowed weights", f"{len(values)} weights, at least {need} needed")
        limit = sn.hp.max_weights_limit
        stored = upscale(values)
        top = max_weight_exceeded(uid, uids, stored, limit)
        if top is not None:
            heavy = uids[stored.index(max(stored))]
            raise TxRejected(
                "max weight limit",
                f"uid {heavy} gets {(top * U16_MAX) >> 32}/65535 of the weight, above max_weights_limit "
                f"{limit}/65535 on subnet {sn.netuid}; spread the weight over more uids",
            )
        return uid

    def _store_weights(self, sn: Subnet, uid: int, uids: Sequence[int], values: Sequence[int]) -> None:
        n = sn.neurons[uid]
        n.weights = tuple(sorted(zip(uids, upscale(values), strict=True)))
        n.last_update = self.height

    def _tx_set_weights(self, signer: bytes, c: SetWeights, dry: bool) -> None:
        sn = self.need_subnet(c.netuid)
        if sn.hp.commit_reveal_enabled:
            raise TxRejected(
                "commit reveal enabled", f"subnet {c.netuid} takes weights by commit_weights and reveal_weights only"
            )
        uid = self._check_weights(sn, signer, c.uids, c.values, c.version_key, reveal=False)
        if not dry:
            self._store_weights(sn, uid, c.uids, c.values)

    def _tx_commit_weights(self, signer: bytes, c: CommitWeights, dry: bool) -> None:
        sn = self.need_subnet(c.netuid)
        if not sn.hp.commit_reveal_enabled:
            raise TxRejected("commit reveal disabled", f"subnet {c.netuid} takes weights by set_weights")
        uid = self.need_uid(sn, signer)
        neuron = sn.neurons[uid]
        if neuron.last_commit:
            nxt = neuron.last_commit + sn.hp.weights_rate_limit
            if self.height < nxt:
                raise TxRejected(
                    "weights rate limit",
                    f"last commit at height {neuron.last_commit}, next allowed at {nxt}, now {self.height}",
                )
        live, _ = sn.live_commits(signer)
        if len(live) >= MAX_UNREVEALED_COMMITS:
            first = live[0][1] + sn.hp.reveal_period
            raise TxRejected(
                "too many commits",
                f"{len(live)} unrevealed commits (limit {MAX_UNREVEALED_COMMITS}); "
                f"reveal or let expire the oldest (its reveal epoch is {first})",
            )
        if dry:
            return
        sn.commits[signer] = live + [(c.commit_hash, sn.epoch_index, self.height)]
        neuron.last_commit = self.height

    def _tx_reveal_weights(self, signer: bytes, c: RevealWeights, dry: bool) -> None:
        sn = self.need_subnet(c.netuid)
        if not sn.hp.commit_reveal_enabled:
            raise TxRejected("commit reveal disabled", f"subnet {c.netuid} takes weights by set_weights")
        live, expired = sn.live_commits(signer)
        h = weights_commit_hash(signer, c.netuid, c.uids, c.values, c.salt, c.version_key)
        pos = next((i for i, cm in enumerate(live) if cm[0] == h), None)
        if pos is None:
            if h in expired:
                raise TxRejected(
                    "commit expired",
                    f"the commit was due for reveal in an earlier epoch; subnet "
                    f"{c.netuid} is now in epoch {sn.epoch_index}",
                )
            if not live:
                raise TxRejected(
                    "no commit", f"no unrevealed weight commit for {crypto.address(signer)} on subnet {c.netuid}"
                )
            raise TxRejected(
                "commit mismatch",
                "hash of (hotkey, netuid, uids, values, salt, version_key) "
                f"matches none of the {len(live)} unrevealed commits",
            )
        epoch = live[pos][1] + sn.hp.reveal_period
        if sn.epoch_index != epoch:
            wait = epoch - sn.epoch_index
            at = next_epoch_height(self.height, sn.netuid, sn.hp.tempo) + (wait - 1) * (sn.hp.tempo + 1) + 1
            raise TxRejected(
                "reveal too early",
                f"committed in epoch {live[pos][1]}, reveal in epoch {epoch} "
                f"(from height {at}), now epoch {sn.epoch_index}",
            )
        uid = self._check_weights(sn, signer, c.uids, c.values, c.version_key, reveal=True)
        if dry:
            return
        rest = live[pos + 1 :]
        if rest:
            sn.commits[signer] = rest
        else:
            sn.commits.pop(signer, None)
        self._store_weights(sn, uid, c.uids, c.values)

    def _tx_set_hyperparameter(self, signer: bytes, c: SetHyperparameter, dry: bool) -> None:
        sn = self.need_subnet(c.netuid)
        if signer != sn.owner:
            raise TxRejected(
                "not owner", f"only subnet {c.netuid}'s owner {crypto.address(sn.owner)} may set hyperparameters"
            )
        hp = sn.hp.with_value(c.name, c.value, n_uids=len(sn.neurons))
        if not dry:
            sn.hp = hp
            sn.burn = max(hp.min_burn, min(hp.max_burn, sn.burn))

    # --- emission and epochs --------------------------------------------------------------------------

    def _tx_report_equivocation(self, signer: bytes, c: ReportEquivocation, dry: bool) -> None:
        """Slash a committee member proven to have signed two blocks for one slot (spec/economics.md §4)."""
        committees = {self.epoch: [m.hotkey for m in self.epoch_committee]}
        if self.epoch > 0:
            committees[self.epoch - 1] = [m.hotkey for m in self.prev_committee]
        epoch, offender = slashing.check_evidence(c, self.params.chain_id, committees)
        if (epoch, offender) in self.offences:
            raise TxRejected(
                "duplicate evidence", f"validator {crypto.address(offender)} was already slashed for epoch {epoch}"
            )
        if dry:
            return
        on_offender = [(ck, amount) for (ck, hk), amount in self.stakes.items() if hk == offender]
        cuts, reward, burn = slashing.slash(on_offender, self.params.slash_ppm, self.params.reporter_reward_ppm)
        for ck, cut in cuts:
            self.sub_stake(ck, offender, cut)
        self.credit(signer, reward)
        self.burned += burn
        self.offences.add((epoch, offender))
        self.jailed[offender] = max(self.jailed.get(offender, -1), self.epoch)

    def _mint(self) -> None:
        """Mint this height's emission into the subnets' pending pots (split 18/41/41 at mint time)."""
        if not self.subnets:
            return
        amount = block_emission(self.params.base_emission, self.issued)
        if amount == 0:
            return
        subnets = self.sorted_subnets()
        weights = [1] * len(subnets)
        if self.params.subnet_share == "stake":
            by_stake = [self.subnet_stake(sn) for sn in subnets]
            if sum(by_stake):
                weights = by_stake
        for sn, share in zip(subnets, apportion(amount, weights), strict=True):
            owner, miners, validators = subnet_split(share)
            sn.pending_owner += owner
            sn.pending_miners += miners
            sn.pending_validators += validators
        self.issued += amount

    def _run_epoch(self, sn: Subnet) -> None:
        """Yuma over the subnet, then pay the pots: owner cut to the owner's balance, miner pot by
        Yuma's miner emission, validator pot by its validator emission (after the validator take)."""
        self.credit(sn.owner, sn.pending_owner)
        sn.pending_owner = 0
        n = len(sn.neurons)
        hp = sn.hp
        if n:
            pot = sn.pending_miners + sn.pending_validators
            commit_blocks = None
            if hp.commit_reveal_enabled:
                commit_blocks = []
                for nr in sn.neurons:
                    live, _ = sn.live_commits(nr.hotkey)
                    commit_blocks.append(live[0][2] if live else None)
            out = yuma.epoch(
                yuma.EpochInputs(
                    block=self.height,
                    stakes=[self.hotkey_stake.get(nr.hotkey, 0) for nr in sn.neurons],
                    weights=[nr.weights for nr in sn.neurons],
                    bonds=[nr.bonds for nr in sn.neurons],
                    validator_permits=[nr.validator_permit for nr in sn.neurons],
                    last_update=[nr.last_update for nr in sn.neurons],
                    block_at_registration=[nr.registered_at for nr in sn.neurons],
                    emission=pot,
                    params=yuma.EpochParams(
                        tempo=hp.tempo,
                        activity_cutoff=hp.activity_cutoff,
                        kappa=hp.kappa,
                        bonds_moving_average=hp.bonds_moving_average,
                        bonds_penalty=hp.bonds_penalty,
                        liquid_alpha_enabled=hp.liquid_alpha_enabled,
                        alpha_low=hp.alpha_low,
                        alpha_high=hp.alpha_high,
                        alpha_sigmoid_steepness=hp.alpha_sigmoid_steepness,
                        max_allowed_validators=hp.max_allowed_validators,
                        stake_threshold=hp.weights_min_stake,
                        commit_reveal_enabled=hp.commit_reveal_enabled,
                    ),
                    last_epoch_block=sn.last_epoch_height,
                    commit_blocks=commit_blocks,
                )
            )
            miners, validators = self._epoch_payouts(sn, out)
            for uid, nr in enumerate(sn.neurons):
                nr.rank, nr.trust, nr.consensus = out.rank[uid], out.trust[uid], out.consensus[uid]
                nr.incentive, nr.dividends, nr.validator_trust = (
                    out.incentive[uid],
                    out.dividends[uid],
                    out.validator_trust[uid],
                )
                nr.validator_permit = out.validator_permits[uid]
                nr.bonds = tuple(out.bonds[uid])
                nr.emission = miners[uid] + validators[uid]
                if miners[uid]:
                    self.add_stake(self.hotkey_owner[nr.hotkey], nr.hotkey, miners[uid])
                if validators[uid]:
                    self._pay_dividend(nr.hotkey, validators[uid])
        sn.epoch_index += 1
        sn.last_epoch_height = self.height

    def _epoch_payouts(self, sn: Subnet, out: yuma.EpochOutputs) -> tuple[list[int], list[int]]:
        """Exact per-uid payouts from the two pots. A pot with no recipient on its side flows to the
        other side (as subtensor pays everything to validators when no miner has incentive); when
        neither side has a recipient (no stake at all), both pots stay pending for the next epoch."""
        n = len(sn.neurons)
        m_w, v_w = list(out.miner_emission), list(out.validator_emission)
        m_pot, v_pot = sn.pending_miners, sn.pending_validators
        has_m, has_v = sum(m_w) > 0, sum(v_w) > 0
        if not has_m and not has_v:
            return [0] * n, [0] * n
        if not has_m:
            m_pot, v_pot = 0, m_pot + v_pot
        elif not has_v:
            m_pot, v_pot = m_pot + v_pot, 0
        miners = apportion(m_pot, m_w) if m_pot else [0] * n
        validators = apportion(v_pot, v_w) if v_pot else [0] * n
        sn.pending_miners = sn.pending_validators = 0
        return miners, validators

    def _pay_dividend(self, hotkey: bytes, amount: int) -> None:
        """The hotkey owner keeps the validator take (18%); the rest goes to the hotkey's stakers pro rata."""
        owner = self.hotkey_owner[hotkey]
        stakers = sorted((c, a) for (c, h), a in self.stakes.items() if h == hotkey)
        if not stakers:
            self.add_stake(owner, hotkey, amount)
            return
        cut = take(amount)
        shares = apportion(amount - cut, [a for _, a in stakers])
        self.add_stake(owner, hotkey, cut)
        for (c, _), s in zip(stakers, shares, strict=True):
            self.add_stake(c, hotkey, s)


def fee_text(fee: int, balance: int) -> str:
    """'fee 0.0003 token (300000 units), balance 0.0001 token (100000 units)': one line for people."""

    def tok(units: int) -> str:
        whole, frac = divmod(units, UNIT)
        return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(whole)

    return f"fee {tok(fee)} token ({fee} units), balance {tok(balance)} token ({balance} units)"


def burn_start(hp: Hyperparams) -> int:
    return max(hp.min_burn, min(hp.max_burn, INITIAL_BURN))


_HANDLERS = {
    Transfer: State._tx_transfer,
    AddStake: State._tx_add_stake,
    RemoveStake: State._tx_remove_stake,
    CreateSubnet: State._tx_create_subnet,
    Register: State._tx_register,
    ServeAxon: State._tx_serve_axon,
    SetWeights: State._tx_set_weights,
    CommitWeights: State._tx_commit_weights,
    RevealWeights: State._tx_reveal_weights,
    SetHyperparameter: State._tx_set_hyperparameter,
    OpenEscrow: escrow.tx_open_escrow,
    ClaimPayment: escrow.tx_claim_payment,
    CloseEscrow: escrow.tx_close_escrow,
    Propose: governance.tx_propose,
    Vote: governance.tx_vote,
    ReportEquivocation: State._tx_report_equivocation,
}

__all__ = [
    "State",
    "Receipt",
    "CommitteeMember",
    "Neuron",
    "Subnet",
    "Params",
    "StateError",
    "epoch_due",
    "next_epoch_height",
    "ROOT_NETUID",
]
