"""The transition function: apply a commit's transactions, then the end-of-height steps; and check_tx, the
mempool's dry run of the same rules (spec/state.md is normative).

    apply_commit(state, height, txs, *, verified={}, leader_round=None, commit_digest=...) -> [Receipt]
        height must be state.height + 1 (the first commit is height 1). Each tx (SignedTransaction
        bytes) is decoded (unless `verified` holds it decoded), chain-checked, nonce-checked, fee-checked,
        signature-checked (skipped when its digest is in `verified`), then its call is dispatched to its
        handler, which applies it or refuses it; a refusal is a Receipt with ok=False and the rule. Then
        governance tallies and executes, subnet scores move, this height's emission is minted, due subnet
        epochs run, and a commit whose leader round reaches epoch_rounds seats the next committee.
    check_tx(state, stx, *, allow_future_nonce=False, size=None) -> fee    (mempool; raises TxRejected)

This module sits on top: it imports the data (protocol/state/state.py) and the handlers
(protocol/state/handlers/), and nothing below imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from protocol import crypto
from protocol.economics.pricing import decayed_burn
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
from protocol.state.handlers import committee, epoch, escrow, governance, staking, subnets, weights
from protocol.state.state import State, epoch_due, fee_text


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


def apply_commit(
    st: State,
    height: int,
    txs: Sequence[bytes],
    *,
    verified: Mapping[bytes, SignedTransaction | None] = MappingProxyType({}),
    leader_round: int | None = None,
    commit_digest: bytes = bytes(32),
) -> list[Receipt]:
    """Apply one committed sub-DAG's transactions in order, then mint and run due epochs.

    `verified` maps the digests of transactions whose signatures the caller checked to their decoded form
    (None: decode them here). The mempool's admission already decoded and verified most of a validator's
    commit; decoding again was as costly as the signature checks under load (spec/consensus.md §D.8).
    `leader_round` and `commit_digest` are the commit's (the driver passes them): a commit whose
    leader round reaches `epoch_rounds` closes the consensus epoch (spec/consensus.md §7)."""
    if height != st.height + 1:
        raise StateError(f"commit height {height} out of order: state is at height {st.height}")
    _start_height(st, height)
    seen: set[bytes] = set()
    receipts = [_apply_raw(st, bytes(raw), verified, seen) for raw in txs]
    governance.end_of_height(st)
    st.lifecycle.update_scores({sn.netuid: st.subnet_stake(sn) for sn in st.sorted_subnets()})
    epoch.mint(st)
    for sn in st.sorted_subnets():
        if epoch_due(height, sn.netuid, sn.hp.tempo):
            epoch.run_epoch(st, sn)
    if leader_round is not None and leader_round >= st.params.epoch_rounds:
        committee.close_epoch(st, commit_digest)
    return receipts


def _start_height(st: State, height: int) -> None:
    """Step 1 of a commit: the new height, each subnet's registration burn decays one height and its
    registration counters reset (per height, and per adjustment_interval once it has passed)."""
    st.height = height
    for sn in st.sorted_subnets():
        sn.burn = decayed_burn(sn.burn, sn.hp.burn_half_life, sn.hp.min_burn, sn.hp.max_burn)
        sn.regs_this_block = 0
        if height - sn.reg_interval_start >= sn.hp.adjustment_interval:
            sn.reg_interval_start, sn.regs_this_interval = height, 0


def _apply_raw(st: State, raw: bytes, verified: Mapping[bytes, SignedTransaction | None], seen: set[bytes]) -> Receipt:
    # The decoder accepts only canonical bytes, so `raw` is stx.to_bytes(): hash it rather than re-encode
    # (spec/consensus.md D.8: re-encoding every committed transaction was a tenth of the codec's time under load).
    dg = crypto.digest(raw)
    stx = verified.get(dg)
    if stx is None:
        try:
            stx = SignedTransaction.from_bytes(raw)
        except DecodeError as exc:
            return Receipt(dg, False, "decode", str(exc))
    tx = stx.body
    if dg in seen:
        return Receipt(dg, False, "duplicate", "transaction already executed in this commit", tx.signer, tx.nonce)
    seen.add(dg)
    try:
        fee = _check_envelope(st, stx, len(raw), check_sig=dg not in verified, allow_future_nonce=False)
    except TxRejected as exc:
        return Receipt(dg, False, exc.rule, str(exc), tx.signer, tx.nonce)
    st.nonces[tx.signer] = tx.nonce + 1
    st.debit(tx.signer, fee)  # burned whether or not the call succeeds (spec/state.md §3)
    st.burned += fee
    st.fees_burned += fee
    st.tx_size = len(raw)
    try:
        _dispatch(st, tx.signer, tx.call, dry=False)
    except TxRejected as exc:
        return Receipt(dg, False, exc.rule, str(exc), tx.signer, tx.nonce)
    return Receipt(dg, True, signer=tx.signer, nonce=tx.nonce)


def check_tx(st: State, stx: SignedTransaction, *, allow_future_nonce: bool = False, size: int | None = None) -> int:
    """Mempool admission: raise TxRejected if `stx` would be refused now, else return its fee; never changes state.

    With allow_future_nonce, a nonce above the next one passes the envelope checks and the call
    checks are skipped (they depend on the transactions before it). The call is judged against the
    balance left after the fee, as at apply time. `size` is the signed length when the caller holds the
    bytes (canonical decoding makes it the encoded length), saving a re-encode per admission."""
    size = len(stx.to_bytes()) if size is None else size
    fee = _check_envelope(st, stx, size, check_sig=True, allow_future_nonce=allow_future_nonce)
    if stx.body.nonce == st.next_nonce(stx.body.signer):
        st.fee_hold = (stx.body.signer, fee)
        st.tx_size = size
        try:
            _dispatch(st, stx.body.signer, stx.body.call, dry=True)
        finally:
            st.fee_hold = None
    return fee


def _check_envelope(
    st: State, stx: SignedTransaction, size: int | None, *, check_sig: bool, allow_future_nonce: bool
) -> int:
    """Chain id, nonce, the fee the signer must be able to pay, then the signature; returns the fee.

    The signature comes last because it is the one costly check (~50 us): a flood of transactions from
    keys that hold nothing, or with spent nonces, is refused by two lookups. Any failure skips the
    transaction, so the order changes only which rule a refusal names."""
    tx = stx.body
    if tx.chain_id != st.chain_id:
        raise TxRejected("chain id", f"transaction is for chain {tx.chain_id!r}, this chain is {st.chain_id!r}")
    nxt = st.next_nonce(tx.signer)
    if tx.nonce < nxt:
        raise TxRejected("nonce", f"nonce {tx.nonce} is already used (next is {nxt}): a replay or stale")
    if tx.nonce > nxt and not allow_future_nonce:
        raise TxRejected(
            "nonce",
            f"nonce {tx.nonce} is ahead of the next nonce {nxt}; it can apply after nonces {nxt}..{tx.nonce - 1}",
        )
    fee = st.fee_of(stx, size)
    have = st.balances.get(tx.signer, 0)
    if have < fee:
        raise TxRejected("fee", f"{fee_text(fee, have)} (short by {fee - have} units)")
    if check_sig:
        try:
            stx.verify(st.chain_id)
        except (WrongChainError, ProtocolError) as exc:
            raise TxRejected("signature", str(exc)) from None
    return fee


def _dispatch(st: State, signer: bytes, call: Any, *, dry: bool) -> None:
    handler = HANDLERS.get(type(call))
    if handler is None:  # pragma: no cover - every Call type has a handler
        raise TxRejected("unknown call", f"no handler for {type(call).__name__}")
    handler(st, signer, call, dry)


# One handler per call type: (state, signer, call, dry) -> None; it raises TxRejected or (unless dry) applies.
HANDLERS: dict[type, Callable[[State, bytes, Any, bool], None]] = {
    Transfer: staking.tx_transfer,
    AddStake: staking.tx_add_stake,
    RemoveStake: staking.tx_remove_stake,
    CreateSubnet: subnets.tx_create_subnet,
    Register: subnets.tx_register,
    ServeAxon: subnets.tx_serve_axon,
    SetWeights: weights.tx_set_weights,
    CommitWeights: weights.tx_commit_weights,
    RevealWeights: weights.tx_reveal_weights,
    SetHyperparameter: subnets.tx_set_hyperparameter,
    OpenEscrow: escrow.tx_open_escrow,
    ClaimPayment: escrow.tx_claim_payment,
    CloseEscrow: escrow.tx_close_escrow,
    Propose: governance.tx_propose,
    Vote: governance.tx_vote,
    ReportEquivocation: committee.tx_report_equivocation,
}
