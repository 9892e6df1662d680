"""Balances and stake: transfer, add_stake, remove_stake (spec/state.md §3)."""

from __future__ import annotations

from protocol import crypto
from protocol.economics.emission import format_tokens
from protocol.errors import TxRejected
from protocol.messages import AddStake, RemoveStake, Transfer
from protocol.state.state import State


def tx_transfer(st: State, signer: bytes, c: Transfer, dry: bool) -> None:
    st.need_amount(c.amount)
    st.need_balance(signer, c.amount, "transfer")
    if dry:
        return
    st.debit(signer, c.amount)
    st.credit(c.dest, c.amount)


def tx_add_stake(st: State, signer: bytes, c: AddStake, dry: bool) -> None:
    st.need_amount(c.amount)
    st.need_balance(signer, c.amount, "add_stake")
    if dry:
        return
    st.hotkey_owner.setdefault(c.hotkey, signer)  # the first staker of a fresh hotkey owns it
    st.debit(signer, c.amount)
    st.add_stake(signer, c.hotkey, c.amount)


def tx_remove_stake(st: State, signer: bytes, c: RemoveStake, dry: bool) -> None:
    st.need_amount(c.amount)
    have = st.stake_of(signer, c.hotkey)
    if have < c.amount:
        raise TxRejected(
            "stake",
            f"remove_stake of {format_tokens(c.amount)} but {crypto.address(signer)} has {format_tokens(have)} "
            f"staked on {crypto.address(c.hotkey)} (short by {format_tokens(c.amount - have)})",
        )
    if dry:
        return
    st.sub_stake(signer, c.hotkey, c.amount)
    st.credit(signer, c.amount)
