"""Paid inference on chain: prepaid escrows, vouchers and claims (spec/economics.md §3 is normative).

A client locks funds with `open_escrow(netuid, amount, expires_at)`. Each paid query carries a
client-signed `Voucher` (escrow id, nonce, miner hotkey, query digest, price). A miner that answered
signs a `ServiceProof` over (voucher digest, response digest), and anyone submits
`claim_payment(voucher, proof)`: the price leaves the escrow, the miner's coldkey gets its share, the
subnet's owner and validator pots get theirs, and the voucher's nonce is spent (a second claim is
refused). Claims land up to `expires_at`; from `expires_at + 1` the client takes the rest back with
`close_escrow(id)`, which also forgets the spent nonces (ids are never reused, so nothing can be
claimed against a closed escrow).

Pure and deterministic: integer arithmetic, heights only, sorted encodings. This module holds the records
the state stores (so protocol/state/state.py can import it); the transactions that change them are in
protocol/state/handlers/escrow.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Fee split of each claimed price, u16 fractions of 65535 (floors; the miner gets the remainder).
FEE_OWNER = 11796  # 18 %: the subnet owner's pot, paid at the subnet's next epoch
FEE_VALIDATORS = 6554  # 10 %: the subnet's validator pot, paid by Yuma at the next epoch
FEE_DENOMINATOR = 65535

MAX_ESCROW_HEIGHTS = 1_000_000  # expires_at at most this far ahead of the opening height
MAX_OPEN_ESCROWS = 16  # per client: bounds the state one key can hold open
MAX_CLAIMS_PER_ESCROW = 100_000  # spent nonces kept per open escrow


def fee_split(price: int) -> tuple[int, int, int]:
    """(miner, owner, validators) shares of `price`; they sum to `price` exactly."""
    owner = price * FEE_OWNER // FEE_DENOMINATOR
    validators = price * FEE_VALIDATORS // FEE_DENOMINATOR
    return price - owner - validators, owner, validators


@dataclass(slots=True)
class Escrow:
    escrow_id: int
    client: bytes
    netuid: int
    remaining: int  # units still locked
    expires_at: int  # last height a claim can land
    opened_at: int
    claimed: int = 0  # units paid out so far
    spent: set[int] = field(default_factory=set)  # voucher nonces already claimed

    def to_obj(self) -> list:
        return [
            self.escrow_id,
            self.client,
            self.netuid,
            self.remaining,
            self.expires_at,
            self.opened_at,
            self.claimed,
            sorted(self.spent),
        ]

    @classmethod
    def from_obj(cls, o: list) -> Escrow:
        return cls(o[0], o[1], o[2], o[3], o[4], o[5], o[6], set(o[7]))

    def info(self) -> dict[str, int | bytes]:
        """What the node API shows (the spent nonces are counted, not listed)."""
        return {
            "escrow_id": self.escrow_id,
            "client": self.client,
            "netuid": self.netuid,
            "remaining": self.remaining,
            "claimed": self.claimed,
            "claims": len(self.spent),
            "expires_at": self.expires_at,
            "opened_at": self.opened_at,
        }


@dataclass(slots=True)
class Escrows:
    """Every open escrow, by id, and the next id to hand out (ids start at 1, never reused)."""

    next_id: int = 1
    open: dict[int, Escrow] = field(default_factory=dict)

    def total(self) -> int:
        """Units locked in escrows: part of the conservation sum."""
        return sum(e.remaining for e in self.open.values())

    def get(self, escrow_id: int) -> Escrow | None:
        return self.open.get(escrow_id)

    def of_client(self, client: bytes) -> list[Escrow]:
        return [self.open[i] for i in sorted(self.open) if self.open[i].client == client]

    def to_obj(self) -> list:
        return [self.next_id, [self.open[i].to_obj() for i in sorted(self.open)]]

    @classmethod
    def from_obj(cls, o: list) -> Escrows:
        return cls(o[0], {e[0]: Escrow.from_obj(e) for e in o[1]})

    def check(self) -> None:
        """Structural invariants; AssertionError names the broken one."""
        for i, e in self.open.items():
            assert i == e.escrow_id < self.next_id, f"escrow {i}: id out of sync"
            assert e.remaining >= 0 and e.claimed >= 0, f"escrow {i}: negative amount"
            assert len(e.spent) <= MAX_CLAIMS_PER_ESCROW, f"escrow {i}: too many claims"
