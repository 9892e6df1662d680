"""Paid inference transactions: open_escrow, claim_payment, close_escrow (spec/economics.md §3). The escrow
records, the fee split and the limits are in protocol/state/escrow.py."""

from __future__ import annotations

from protocol import crypto
from protocol.economics.emission import format_tokens
from protocol.errors import ProtocolError, TxRejected
from protocol.messages import ClaimPayment, CloseEscrow, OpenEscrow
from protocol.state.escrow import MAX_CLAIMS_PER_ESCROW, MAX_ESCROW_HEIGHTS, MAX_OPEN_ESCROWS, Escrow, fee_split
from protocol.state.state import State


def _need_escrow(st: State, escrow_id: int) -> Escrow:
    e = st.escrows.get(escrow_id)
    if e is None:
        what = "was closed" if 0 < escrow_id < st.escrows.next_id else "was never opened"
        raise TxRejected("unknown escrow", f"escrow {escrow_id} is not open (it {what})")
    return e


# --- transactions --------------------------------------------------------------------------------------


def tx_open_escrow(st: State, signer: bytes, c: OpenEscrow, dry: bool) -> None:
    """Lock `amount` of the signer's balance for queries to subnet `netuid` until `expires_at`."""
    st.need_subnet(c.netuid)
    st.need_amount(c.amount)
    if not st.height < c.expires_at <= st.height + MAX_ESCROW_HEIGHTS:
        raise TxRejected(
            "escrow expiry",
            f"expires_at {c.expires_at} must be in ({st.height}, {st.height + MAX_ESCROW_HEIGHTS}] at height "
            f"{st.height} (at most {MAX_ESCROW_HEIGHTS} heights ahead)",
        )
    held = len(st.escrows.of_client(signer))
    if held >= MAX_OPEN_ESCROWS:
        first = min(e.expires_at for e in st.escrows.of_client(signer))
        raise TxRejected(
            "escrow limit",
            f"{crypto.address(signer)} has {held} open escrows (limit {MAX_OPEN_ESCROWS}); close one after it "
            f"expires (the first expires at height {first})",
        )
    st.need_balance(signer, c.amount, "open_escrow")
    if dry:
        return
    st.debit(signer, c.amount)
    eid = st.escrows.next_id
    st.escrows.next_id = eid + 1
    st.escrows.open[eid] = Escrow(eid, signer, c.netuid, c.amount, c.expires_at, st.height)


def tx_claim_payment(st: State, signer: bytes, c: ClaimPayment, dry: bool) -> None:
    """Pay a voucher whose miner proved service. Any key may submit it; signed by the voucher's miner, the
    claim's fee comes out of the miner's share (spec/economics.md §6.1)."""
    v, p = c.voucher.body, c.proof.body
    e = _need_escrow(st, v.escrow_id)
    if st.height > e.expires_at:
        raise TxRejected(
            "escrow expired",
            f"escrow {e.escrow_id} took claims up to height {e.expires_at}, now {st.height}; its rest is the client's",
        )
    if v.client != e.client:
        raise TxRejected(
            "voucher signature",
            f"voucher names client {crypto.address(v.client)}, escrow {e.escrow_id} belongs to "
            f"{crypto.address(e.client)}",
        )
    try:
        c.voucher.verify(st.chain_id)
    except ProtocolError as exc:
        raise TxRejected("voucher signature", f"voucher of escrow {e.escrow_id}: {exc}") from None
    if p.miner != v.miner:
        raise TxRejected(
            "service proof",
            f"proof signed for {crypto.address(p.miner)}, the voucher pays {crypto.address(v.miner)}",
        )
    if p.voucher_digest != c.voucher.digest:
        raise TxRejected("service proof", "the proof is for another voucher (voucher_digest differs)")
    try:
        c.proof.verify(st.chain_id)
    except ProtocolError as exc:
        raise TxRejected("service proof", f"proof of {crypto.address(p.miner)}: {exc}") from None
    if v.nonce in e.spent:
        raise TxRejected("already claimed", f"voucher nonce {v.nonce} of escrow {e.escrow_id} was already paid")
    st.need_amount(v.price)
    if v.price > e.remaining:
        raise TxRejected(
            "escrow balance",
            f"voucher asks {format_tokens(v.price)} but escrow {e.escrow_id} holds {format_tokens(e.remaining)} "
            f"(short by {format_tokens(v.price - e.remaining)}); the client signed more than it deposited",
        )
    if len(e.spent) >= MAX_CLAIMS_PER_ESCROW:
        raise TxRejected(
            "claim limit", f"escrow {e.escrow_id} has {len(e.spent)} claims (limit {MAX_CLAIMS_PER_ESCROW})"
        )
    owner = st.hotkey_owner.get(v.miner)
    if owner is None:
        raise TxRejected(
            "not registered", f"miner hotkey {crypto.address(v.miner)} has no coldkey (never registered or staked)"
        )
    miner_share, owner_share, validator_share = fee_split(v.price)
    fee = st.claim_fee_of(signer, c)
    if fee > miner_share:
        raise TxRejected(
            "claim fee",
            f"the claim's fee {format_tokens(fee)} is above the miner's share {format_tokens(miner_share)} of the "
            f"price {format_tokens(v.price)}; price queries higher, or submit the claim from a funded key",
        )
    if dry:
        return
    e.remaining -= v.price
    e.claimed += v.price
    e.spent.add(v.nonce)
    st.changed_escrow(e.escrow_id)
    st.credit(owner, miner_share - fee)
    st.burned += fee
    st.fees_burned += fee
    sn = st.subnets.get(e.netuid)
    if sn is None or sn.created_at > e.opened_at:  # the subnet is gone (or its netuid reused): shares burned
        st.burned += owner_share + validator_share
    else:
        sn.pending_owner += owner_share
        sn.pending_validators += validator_share


def tx_close_escrow(st: State, signer: bytes, c: CloseEscrow, dry: bool) -> None:
    """Return an expired escrow's rest to its client and forget it."""
    e = _need_escrow(st, c.escrow_id)
    if signer != e.client:
        raise TxRejected(
            "not escrow owner", f"escrow {e.escrow_id} belongs to {crypto.address(e.client)}; only it may close it"
        )
    if st.height <= e.expires_at:
        raise TxRejected(
            "escrow not expired",
            f"escrow {e.escrow_id} takes claims up to height {e.expires_at}; close it from height "
            f"{e.expires_at + 1} (now {st.height})",
        )
    if dry:
        return
    del st.escrows.open[e.escrow_id]
    st.credit(e.client, e.remaining)
