"""Transaction fees (spec/economics.md §6).

Pure integer arithmetic. `fee = tx_base_fee + tx_byte_fee * len(signed transaction bytes) + tip`; the
weight-setting, axon-serving and evidence calls pay only their tip (subtensor's Pays::No for weights and
axons; they are bounded by their own rate limits, and an evidence reporter may hold no balance). A payment
claim signed by its voucher's miner hotkey (which usually holds nothing) also pays only its tip from the
signer's balance, but its base and byte fee comes out of the miner's share of the payment (`claim_fee`), so a
self-dealt claim of a tiny voucher costs as much chain fee as any transaction. Every fee is burned: in a
leaderless DAG every validator may carry the same transaction, so paying the carrier would reward stuffing
and duplicates.
"""

from __future__ import annotations

from typing import Any

from protocol.economics.emission import UNIT
from protocol.messages import ClaimPayment, CommitWeights, ReportEquivocation, RevealWeights, ServeAxon, SetWeights

DEFAULT_BASE_FEE = UNIT // 10_000  # 100,000 units = 0.0001 token per transaction
DEFAULT_BYTE_FEE = 1_000  # units per signed byte: a 200-byte transfer pays 0.0003 token, 1 MiB ~1.05 token
BASE_FEE_BOUNDS = (0, UNIT)  # governance may move the fee parameters within these
BYTE_FEE_BOUNDS = (0, UNIT // 1_000)

FEE_FREE_CALLS: tuple[type, ...] = (SetWeights, CommitWeights, RevealWeights, ServeAxon, ReportEquivocation)


def is_miner_claim(call: Any, signer: bytes) -> bool:
    """A payment claim signed by the miner its voucher pays: its fee is taken from the payment."""
    return isinstance(call, ClaimPayment) and signer == call.voucher.body.miner


def is_fee_free(call: Any, signer: bytes) -> bool:
    """True for the transactions whose signer pays only its tip from its balance."""
    return isinstance(call, FEE_FREE_CALLS) or is_miner_claim(call, signer)


def claim_fee(size: int, call: Any, signer: bytes, base_fee: int, byte_fee: int) -> int:
    """The units a successful claim burns out of the miner's share (0 unless `is_miner_claim`)."""
    return base_fee + byte_fee * size if is_miner_claim(call, signer) else 0


def tx_fee(size: int, call: Any, signer: bytes, tip: int, base_fee: int, byte_fee: int) -> int:
    """The units the signer of a transaction of `size` signed bytes burns when it applies."""
    if is_fee_free(call, signer):
        return tip
    return base_fee + byte_fee * size + tip

