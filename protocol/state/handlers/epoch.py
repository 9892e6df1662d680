"""The end-of-height economics: mint this height's emission into the subnets' pots, and at a subnet's
tempo run Yuma over it and pay the pots out (spec/state.md §4, spec/economics.md)."""

from __future__ import annotations

from protocol.economics import yuma
from protocol.economics.emission import apportion, block_emission, subnet_split, take
from protocol.state.state import State, Subnet


def mint(st: State) -> None:
    """Mint this height's emission into the subnets' pending pots (split 18/41/41 at mint time)."""
    if not st.subnets:
        return
    amount = block_emission(st.params.base_emission, st.issued)
    if amount == 0:
        return
    subnets = st.sorted_subnets()
    weights = [1] * len(subnets)
    if st.params.subnet_share == "stake":
        by_stake = [st.subnet_stake(sn) for sn in subnets]
        if sum(by_stake):
            weights = by_stake
    for sn, share in zip(subnets, apportion(amount, weights), strict=True):
        owner, miners, validators = subnet_split(share)
        sn.pending_owner += owner
        sn.pending_miners += miners
        sn.pending_validators += validators
    st.issued += amount


def run_epoch(st: State, sn: Subnet) -> None:
    """Yuma over the subnet, then pay the pots: owner cut to the owner's balance, miner pot by
    Yuma's miner emission, validator pot by its validator emission (after the validator take)."""
    st.credit(sn.owner, sn.pending_owner)
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
                block=st.height,
                stakes=[st.hotkey_stake.get(nr.hotkey, 0) for nr in sn.neurons],
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
        miners, validators = _epoch_payouts(sn, out)
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
                st.add_stake(st.hotkey_owner[nr.hotkey], nr.hotkey, miners[uid])
            if validators[uid]:
                _pay_dividend(st, nr.hotkey, validators[uid])
    sn.epoch_index += 1
    sn.last_epoch_height = st.height


def _epoch_payouts(sn: Subnet, out: yuma.EpochOutputs) -> tuple[list[int], list[int]]:
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


def _pay_dividend(st: State, hotkey: bytes, amount: int) -> None:
    """The hotkey owner keeps the validator take (18%); the rest goes to the hotkey's stakers pro rata."""
    owner = st.hotkey_owner[hotkey]
    stakers = sorted((c, a) for (c, h), a in st.stakes.items() if h == hotkey)
    if not stakers:
        st.add_stake(owner, hotkey, amount)
        return
    cut = take(amount)
    shares = apportion(amount - cut, [a for _, a in stakers])
    st.add_stake(owner, hotkey, cut)
    for (c, _), s in zip(stakers, shares, strict=True):
        st.add_stake(c, hotkey, s)
