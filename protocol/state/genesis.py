"""The genesis file: a human-editable JSON document that fixes a chain's starting state.

Parsing is strict (unknown keys, wrong types, duplicate keys, bad addresses and impossible totals are
refused with `GenesisError` naming the JSON path). The genesis hash is BLAKE2b-256 of the canonical
CBOR of the parsed document, so two files that differ only in whitespace, key order or address
spelling (address vs hex) hash the same. spec/state.md §Genesis is normative.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from protocol import codec, crypto
from protocol.economics.emission import TOTAL_SUPPLY, UNIT
from protocol.economics.fees import BASE_FEE_BOUNDS, BYTE_FEE_BOUNDS, DEFAULT_BASE_FEE, DEFAULT_BYTE_FEE
from protocol.economics.hyperparams import Hyperparams
from protocol.errors import ProtocolError
from protocol.messages import MAX_CHAIN_ID, MAX_MULTIADDRS

PPM = 1_000_000  # parts per million: the unit of genesis fractions

SHARE_RULES = ("equal", "stake")
U64_MAX = (1 << 64) - 1


class GenesisError(ProtocolError):
    """A genesis document that is malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a validator's consensus node listens: libp2p peer id and multiaddrs."""

    peer_id: str
    multiaddrs: tuple[str, ...] = ()

    def to_obj(self) -> list:
        return [self.peer_id, list(self.multiaddrs)]


@dataclass(frozen=True, slots=True)
class StakeEntry:
    coldkey: bytes
    hotkey: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class CommitteeEntry:
    """A genesis validator: its hotkey self-staked (from `coldkey`) with `stake` units."""

    hotkey: bytes
    coldkey: bytes
    stake: int
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class SubnetEntry:
    owner: bytes
    name: str
    hyperparams: Hyperparams = field(default_factory=Hyperparams)


@dataclass(frozen=True, slots=True)
class Genesis:
    """A parsed genesis document. Build one with `parse_genesis`, `load_genesis` or `build_genesis`."""

    chain_id: str
    balances: tuple[tuple[bytes, int], ...] = ()
    stakes: tuple[StakeEntry, ...] = ()
    committee: tuple[CommitteeEntry, ...] = ()
    subnets: tuple[SubnetEntry, ...] = ()
    base_emission: int = UNIT
    subnet_share: str = "equal"
    epoch_rounds: int = 1000
    committee_size: int = 64
    committee_min_stake: int = UNIT
    slash_ppm: int = 100_000  # share of an equivocator's stake slashed per offence (spec/economics.md §4)
    reporter_reward_ppm: int = 100_000  # share of the slashed amount paid to the reporter; the rest is burned
    subnet_min_burn: int = 1000 * UNIT
    subnet_burn_interval: int = 14 * 7200
    max_subnets: int = 32
    subnet_immunity_period: int = 7 * 7200  # heights a new subnet cannot be replaced (spec/economics.md §1)
    tx_base_fee: int = DEFAULT_BASE_FEE  # transaction fees, burned (spec/economics.md §6)
    tx_byte_fee: int = DEFAULT_BYTE_FEE
    gov_deposit: int = 100 * UNIT  # governance (spec/economics.md §2)
    gov_voting_period: int = 7200
    gov_execution_delay: int = 100
    gov_quorum_bps: int = 2000
    gov_threshold_bps: int = 5000

    def issued(self) -> int:
        """Units that exist at genesis: balances plus stakes plus committee self-stakes."""
        return (
            sum(a for _, a in self.balances) + sum(s.amount for s in self.stakes) + sum(c.stake for c in self.committee)
        )

    def _parameter_sections(self) -> dict[str, dict[str, Any]]:
        """The emission, consensus, network and governance sections, as the JSON file spells them."""
        return {
            "emission": {"base_per_height": self.base_emission, "subnet_share": self.subnet_share},
            "consensus": {
                "epoch_rounds": self.epoch_rounds,
                "committee_size": self.committee_size,
                "committee_min_stake": self.committee_min_stake,
                "slash_ppm": self.slash_ppm,
                "reporter_reward_ppm": self.reporter_reward_ppm,
            },
            "network": {
                "subnet_min_burn": self.subnet_min_burn,
                "subnet_burn_interval": self.subnet_burn_interval,
                "max_subnets": self.max_subnets,
                "subnet_immunity_period": self.subnet_immunity_period,
                "tx_base_fee": self.tx_base_fee,
                "tx_byte_fee": self.tx_byte_fee,
            },
            "governance": {
                "deposit": self.gov_deposit,
                "voting_period": self.gov_voting_period,
                "execution_delay": self.gov_execution_delay,
                "quorum_bps": self.gov_quorum_bps,
                "threshold_bps": self.gov_threshold_bps,
            },
        }

    def to_obj(self) -> dict[str, Any]:
        """Canonical CBOR-ready form (keys as raw bytes); the genesis hash covers exactly this."""
        return {
            "chain_id": self.chain_id,
            "balances": [[k, a] for k, a in self.balances],
            "stakes": [[s.coldkey, s.hotkey, s.amount] for s in self.stakes],
            "committee": [
                [c.hotkey, c.coldkey, c.stake, None if c.endpoint is None else c.endpoint.to_obj()]
                for c in self.committee
            ],
            "subnets": [[s.owner, s.name, s.hyperparams.to_obj()] for s in self.subnets],
            **self._parameter_sections(),
        }

    def hash(self) -> bytes:
        return crypto.digest(codec.encode(self.to_obj()))

    def to_json(self) -> str:
        """The human-editable form, with addresses; `parse_genesis(g.to_json()) == g`."""
        hp_default = Hyperparams().to_obj()
        doc: dict[str, Any] = {
            "chain_id": self.chain_id,
            "balances": {crypto.address(k): a for k, a in self.balances},
            "stakes": [
                {"coldkey": crypto.address(s.coldkey), "hotkey": crypto.address(s.hotkey), "amount": s.amount}
                for s in self.stakes
            ],
            "committee": [_committee_json(c) for c in self.committee],
            "subnets": [
                {
                    "owner": crypto.address(s.owner),
                    "name": s.name,
                    "hyperparameters": {k: v for k, v in s.hyperparams.to_obj().items() if hp_default[k] != v},
                }
                for s in self.subnets
            ],
            **self._parameter_sections(),
        }
        return json.dumps(doc, indent=2) + "\n"


def _committee_json(c: CommitteeEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"hotkey": crypto.address(c.hotkey), "stake": c.stake}
    if c.coldkey != c.hotkey:
        out["coldkey"] = crypto.address(c.coldkey)
    if c.endpoint is not None:
        out["peer_id"] = c.endpoint.peer_id
        out["multiaddrs"] = list(c.endpoint.multiaddrs)
    return out


# --- strict parsing ------------------------------------------------------------------------------------

_TOP = {"chain_id", "balances", "stakes", "committee", "subnets", "emission", "consensus", "network", "governance"}
_GOVERNANCE = {"deposit", "voting_period", "execution_delay", "quorum_bps", "threshold_bps"}


def _no_dup_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise GenesisError(f"duplicate key {k!r} in genesis JSON")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise GenesisError(f"genesis JSON may not contain {name}")


def _map(obj: Any, path: str, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
    if type(obj) is not dict:
        raise GenesisError(f"{path}: expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - required - optional)
    if unknown:
        raise GenesisError(
            f"{path}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(required | optional))})"
        )
    missing = sorted(required - set(obj))
    if missing:
        raise GenesisError(f"{path}: missing key(s) {', '.join(missing)}")
    return obj


def _int(v: Any, path: str, lo: int = 0, hi: int = U64_MAX) -> int:
    if type(v) is not int:
        raise GenesisError(f"{path}: expected an integer, got {v!r}")
    if not lo <= v <= hi:
        raise GenesisError(f"{path}: {v} is outside [{lo}, {hi}]")
    return v


def _str(v: Any, path: str, max_len: int, min_len: int = 0) -> str:
    if type(v) is not str:
        raise GenesisError(f"{path}: expected a string, got {v!r}")
    if not min_len <= len(v) <= max_len:
        raise GenesisError(f"{path}: length {len(v)} is outside [{min_len}, {max_len}]")
    return v


def _key(v: Any, path: str) -> bytes:
    if type(v) is not str:
        raise GenesisError(f"{path}: expected an address, got {v!r}")
    try:
        return crypto.parse_address(v)
    except ProtocolError as exc:
        raise GenesisError(f"{path}: {exc}") from None


def _endpoint(obj: dict[str, Any], path: str) -> Endpoint | None:
    if "peer_id" not in obj:
        if "multiaddrs" in obj:
            raise GenesisError(f"{path}: multiaddrs given without a peer_id")
        return None
    peer_id = _str(obj["peer_id"], f"{path}.peer_id", 128, 1)
    addrs = obj.get("multiaddrs", [])
    if type(addrs) is not list or len(addrs) > MAX_MULTIADDRS:
        raise GenesisError(f"{path}.multiaddrs: expected a list of at most {MAX_MULTIADDRS} strings")
    out = []
    for i, a in enumerate(addrs):
        a = _str(a, f"{path}.multiaddrs[{i}]", 256, 1)
        if not a.startswith("/"):
            raise GenesisError(f"{path}.multiaddrs[{i}]: {a!r} is not a multiaddr (must start with '/')")
        out.append(a)
    return Endpoint(peer_id, tuple(out))


def parse_genesis(text: str | bytes) -> Genesis:
    """Parse and check a genesis JSON document; raise GenesisError naming the path of any problem.

    Just over 80 lines only because the Genesis call names each of its ~20 parameters with its bounds."""
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_dup_pairs,
            parse_float=lambda s: _reject_constant(f"float {s}"),
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis is not valid JSON: {exc}") from None
    d = _map(doc, "genesis", {"chain_id"}, _TOP - {"chain_id"})
    chain_id = _str(d["chain_id"], "chain_id", MAX_CHAIN_ID, 1)

    balances_obj = d.get("balances", {})
    if type(balances_obj) is not dict:
        raise GenesisError("balances: expected an object of address to units")
    balances: dict[bytes, int] = {}
    for addr in sorted(balances_obj):
        k = _key(addr, f"balances[{addr!r}]")
        if k in balances:
            raise GenesisError(f"balances[{addr!r}]: the same account is listed twice")
        balances[k] = _int(balances_obj[addr], f"balances[{addr!r}]")

    stakes, committee, subnets = _stakes(d), _committee(d), _subnets(d)

    em = _map(d.get("emission", {}), "emission", set(), {"base_per_height", "subnet_share"})
    cons_keys = {"epoch_rounds", "committee_size", "committee_min_stake", "slash_ppm", "reporter_reward_ppm"}
    cons = _map(d.get("consensus", {}), "consensus", set(), cons_keys)
    net = _map(
        d.get("network", {}),
        "network",
        set(),
        {"subnet_min_burn", "subnet_burn_interval", "max_subnets", "subnet_immunity_period", "tx_base_fee",
         "tx_byte_fee"},
    )
    gov = _map(d.get("governance", {}), "governance", set(), _GOVERNANCE)
    defaults = Genesis(chain_id)
    share = em.get("subnet_share", defaults.subnet_share)
    if share not in SHARE_RULES:
        raise GenesisError(f"emission.subnet_share: {share!r} is not one of {', '.join(SHARE_RULES)}")
    g = Genesis(
        chain_id=chain_id,
        balances=tuple(sorted(balances.items())),
        stakes=tuple(stakes),
        committee=tuple(committee),
        subnets=tuple(subnets),
        base_emission=_int(em.get("base_per_height", defaults.base_emission), "emission.base_per_height"),
        subnet_share=share,
        epoch_rounds=_int(cons.get("epoch_rounds", defaults.epoch_rounds), "consensus.epoch_rounds", 1),
        committee_size=_int(cons.get("committee_size", defaults.committee_size), "consensus.committee_size", 1, 256),
        committee_min_stake=_int(
            cons.get("committee_min_stake", defaults.committee_min_stake), "consensus.committee_min_stake", 1
        ),
        slash_ppm=_int(cons.get("slash_ppm", defaults.slash_ppm), "consensus.slash_ppm", 0, PPM),
        reporter_reward_ppm=_int(
            cons.get("reporter_reward_ppm", defaults.reporter_reward_ppm), "consensus.reporter_reward_ppm", 0, PPM
        ),
        subnet_min_burn=_int(net.get("subnet_min_burn", defaults.subnet_min_burn), "network.subnet_min_burn"),
        subnet_burn_interval=_int(
            net.get("subnet_burn_interval", defaults.subnet_burn_interval), "network.subnet_burn_interval", 1
        ),
        max_subnets=_int(net.get("max_subnets", defaults.max_subnets), "network.max_subnets", 0, 65534),
        subnet_immunity_period=_int(
            net.get("subnet_immunity_period", defaults.subnet_immunity_period), "network.subnet_immunity_period"
        ),
        tx_base_fee=_int(net.get("tx_base_fee", defaults.tx_base_fee), "network.tx_base_fee", *BASE_FEE_BOUNDS),
        tx_byte_fee=_int(net.get("tx_byte_fee", defaults.tx_byte_fee), "network.tx_byte_fee", *BYTE_FEE_BOUNDS),
        gov_deposit=_int(gov.get("deposit", defaults.gov_deposit), "governance.deposit"),
        gov_voting_period=_int(
            gov.get("voting_period", defaults.gov_voting_period), "governance.voting_period", 1, 10_000_000
        ),
        gov_execution_delay=_int(
            gov.get("execution_delay", defaults.gov_execution_delay), "governance.execution_delay", 0, 10_000_000
        ),
        gov_quorum_bps=_int(gov.get("quorum_bps", defaults.gov_quorum_bps), "governance.quorum_bps", 1, 10_000),
        gov_threshold_bps=_int(
            gov.get("threshold_bps", defaults.gov_threshold_bps), "governance.threshold_bps", 5_000, 9_999
        ),
    )
    check_genesis(g)
    return g


def _stakes(d: dict) -> list[StakeEntry]:
    """The `stakes` list: each (coldkey, hotkey, amount) checked."""
    stakes = []
    for i, s in enumerate(_list(d.get("stakes", []), "stakes")):
        p = f"stakes[{i}]"
        s = _map(s, p, {"coldkey", "hotkey", "amount"})
        stakes.append(
            StakeEntry(
                _key(s["coldkey"], p + ".coldkey"),
                _key(s["hotkey"], p + ".hotkey"),
                _int(s["amount"], p + ".amount", 1),
            )
        )
    return stakes


def _committee(d: dict) -> list[CommitteeEntry]:
    """The `committee` list: each validator once, with its stake and optional endpoint."""
    committee = []
    seen: set[bytes] = set()
    for i, c in enumerate(_list(d.get("committee", []), "committee")):
        p = f"committee[{i}]"
        c = _map(c, p, {"hotkey", "stake"}, {"coldkey", "peer_id", "multiaddrs"})
        hot = _key(c["hotkey"], p + ".hotkey")
        if hot in seen:
            raise GenesisError(f"{p}.hotkey: validator listed twice")
        seen.add(hot)
        cold = _key(c["coldkey"], p + ".coldkey") if "coldkey" in c else hot
        committee.append(CommitteeEntry(hot, cold, _int(c["stake"], p + ".stake", 1), _endpoint(c, p)))
    return committee


def _subnets(d: dict) -> list[SubnetEntry]:
    """The `subnets` list: owner, name and checked hyperparameters."""
    subnets = []
    for i, s in enumerate(_list(d.get("subnets", []), "subnets")):
        p = f"subnets[{i}]"
        s = _map(s, p, {"owner", "name"}, {"hyperparameters"})
        try:
            hp = Hyperparams.from_obj(s.get("hyperparameters", {}), p + ".hyperparameters")
        except ProtocolError as exc:
            raise GenesisError(str(exc)) from None
        subnets.append(SubnetEntry(_key(s["owner"], p + ".owner"), _str(s["name"], p + ".name", 64), hp))
    return subnets


def _list(v: Any, path: str) -> list:
    if type(v) is not list:
        raise GenesisError(f"{path}: expected a list, got {type(v).__name__}")
    return v


def check_genesis(g: Genesis) -> None:
    """Cross-field rules: supply under the cap, a committee to start from, subnets within the limit."""
    if g.issued() > TOTAL_SUPPLY:
        raise GenesisError(f"genesis issues {g.issued()} units, above the supply cap {TOTAL_SUPPLY}")
    if not g.committee:
        raise GenesisError("committee: at least one validator is needed to produce blocks")
    if len(g.subnets) > g.max_subnets:
        raise GenesisError(f"subnets: {len(g.subnets)} listed but network.max_subnets is {g.max_subnets}")
    for i, c in enumerate(g.committee):
        if c.stake < g.committee_min_stake:
            raise GenesisError(
                f"committee[{i}].stake: {c.stake} is below consensus.committee_min_stake {g.committee_min_stake}"
            )


def load_genesis(path: str) -> Genesis:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:  # a typed error: the CLI prints it as one line, not as a crash
        raise GenesisError(f"cannot read genesis {path}: {exc.strerror or exc}") from None
    return parse_genesis(data)


def build_genesis(
    chain_id: str,
    *,
    validators: list[tuple[bytes, int]] | list[tuple[bytes, int, Endpoint | None]] = (),
    balances: dict[bytes, int] | None = None,
    stakes: list[tuple[bytes, bytes, int]] = (),
    subnets: list[tuple[bytes, str, dict[str, int]]] = (),
    **params: Any,
) -> Genesis:
    """Build a checked Genesis in code (tests, the testnet generator). `validators` are self-staked
    (hotkey, stake[, endpoint]); `subnets` are (owner, name, hyperparameter overrides); `params` sets
    any other Genesis field (base_emission, subnet_share, epoch_rounds, committee_min_stake, ...)."""
    committee = []
    for v in validators:
        hot, stake = v[0], v[1]
        ep = v[2] if len(v) > 2 else None
        committee.append(CommitteeEntry(hot, hot, stake, ep))
    g = Genesis(
        chain_id=chain_id,
        balances=tuple(sorted((balances or {}).items())),
        stakes=tuple(StakeEntry(c, h, a) for c, h, a in stakes),
        committee=tuple(committee),
        subnets=tuple(SubnetEntry(o, n, Hyperparams.from_obj(dict(hp))) for o, n, hp in subnets),
        **params,
    )
    # Round-trip through the JSON parser so a built genesis obeys exactly the rules a file does.
    parsed = parse_genesis(g.to_json())
    if parsed != g:
        raise GenesisError("genesis does not survive its own JSON form (a field out of range?)")
    return parsed
