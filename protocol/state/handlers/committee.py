"""The consensus committee: equivocation reports that slash and jail a member (spec/economics.md §4), and the
epoch change that seats the next committee (spec/consensus.md §7)."""

from __future__ import annotations

from protocol import crypto
from protocol.errors import TxRejected
from protocol.messages import ReportEquivocation
from protocol.state import slashing
from protocol.state.state import State, epoch_seed


def tx_report_equivocation(st: State, signer: bytes, c: ReportEquivocation, dry: bool) -> None:
    """Slash a committee member proven to have signed two blocks for one slot (spec/economics.md §4)."""
    committees = {st.epoch: [m.hotkey for m in st.epoch_committee]}
    if st.epoch > 0:
        committees[st.epoch - 1] = [m.hotkey for m in st.prev_committee]
    epoch, offender = slashing.check_evidence(c, st.params.chain_id, committees)
    if (epoch, offender) in st.offences:
        raise TxRejected(
            "duplicate evidence", f"validator {crypto.address(offender)} was already slashed for epoch {epoch}"
        )
    if dry:
        return
    on_offender = [(ck, amount) for (ck, hk), amount in st.stakes.items() if hk == offender]
    cuts, reward, burn = slashing.slash(on_offender, st.params.slash_ppm, st.params.reporter_reward_ppm)
    for ck, cut in cuts:
        st.sub_stake(ck, offender, cut)
    st.credit(signer, reward)
    st.burned += burn
    st.offences.add((epoch, offender))
    st.jailed[offender] = max(st.jailed.get(offender, -1), st.epoch)


def close_epoch(st: State, closing_digest: bytes) -> None:
    """The next consensus epoch: a fresh DAG under the committee chosen by stake now."""
    nxt = st.committee()
    st.prev_committee = st.epoch_committee
    st.epoch_committee = nxt
    st.epoch += 1
    st.epoch_seed = epoch_seed(closing_digest, nxt)
    st.epoch_start = st.height + 1
    st.epoch_start_digest = closing_digest
