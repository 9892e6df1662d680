"""Weights: set_weights, and commit_weights then reveal_weights on commit-reveal subnets (spec/state.md §3),
with subtensor's do_set_weights checks in its order."""

from __future__ import annotations

from collections.abc import Sequence

from protocol import crypto
from protocol.economics.hyperparams import U16_MAX
from protocol.economics.weights import (
    MAX_UNREVEALED_COMMITS,
    first_duplicate,
    is_self_weight,
    max_weight_exceeded,
    upscale,
    weights_commit_hash,
)
from protocol.errors import TxRejected
from protocol.messages import CommitWeights, RevealWeights, SetWeights
from protocol.state.state import State, Subnet, next_epoch_height


def _check_weights(
    st: State, sn: Subnet, hotkey: bytes, uids: Sequence[int], values: Sequence[int], version_key: int, *, reveal: bool
) -> int:
    """subtensor's do_set_weights checks, in its order; returns the signer's uid."""
    if len(uids) != len(values):
        raise TxRejected("weights length", f"{len(uids)} uids but {len(values)} values")
    n = len(sn.neurons)
    if len(uids) > n:
        raise TxRejected("too many weights", f"{len(uids)} weights but subnet {sn.netuid} has {n} uids")
    uid = st.need_uid(sn, hotkey)
    stake = st.hotkey_stake.get(hotkey, 0)
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
        if st.height < nxt:
            raise TxRejected(
                "weights rate limit",
                f"last set at height {neuron.last_update}, next allowed at {nxt}, now {st.height}",
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


def _store_weights(st: State, sn: Subnet, uid: int, uids: Sequence[int], values: Sequence[int]) -> None:
    n = sn.neurons[uid]
    n.weights = tuple(sorted(zip(uids, upscale(values), strict=True)))
    n.last_update = st.height


def tx_set_weights(st: State, signer: bytes, c: SetWeights, dry: bool) -> None:
    sn = st.need_subnet(c.netuid)
    if sn.hp.commit_reveal_enabled:
        raise TxRejected(
            "commit reveal enabled", f"subnet {c.netuid} takes weights by commit_weights and reveal_weights only"
        )
    uid = _check_weights(st, sn, signer, c.uids, c.values, c.version_key, reveal=False)
    if not dry:
        _store_weights(st, sn, uid, c.uids, c.values)


def tx_commit_weights(st: State, signer: bytes, c: CommitWeights, dry: bool) -> None:
    sn = st.need_subnet(c.netuid)
    if not sn.hp.commit_reveal_enabled:
        raise TxRejected("commit reveal disabled", f"subnet {c.netuid} takes weights by set_weights")
    uid = st.need_uid(sn, signer)
    neuron = sn.neurons[uid]
    if neuron.last_commit:
        nxt = neuron.last_commit + sn.hp.weights_rate_limit
        if st.height < nxt:
            raise TxRejected(
                "weights rate limit",
                f"last commit at height {neuron.last_commit}, next allowed at {nxt}, now {st.height}",
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
    sn.commits[signer] = live + [(c.commit_hash, sn.epoch_index, st.height)]
    neuron.last_commit = st.height


def tx_reveal_weights(st: State, signer: bytes, c: RevealWeights, dry: bool) -> None:
    sn = st.need_subnet(c.netuid)
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
        at = next_epoch_height(st.height, sn.netuid, sn.hp.tempo) + (wait - 1) * (sn.hp.tempo + 1) + 1
        raise TxRejected(
            "reveal too early",
            f"committed in epoch {live[pos][1]}, reveal in epoch {epoch} "
            f"(from height {at}), now epoch {sn.epoch_index}",
        )
    uid = _check_weights(st, sn, signer, c.uids, c.values, c.version_key, reveal=True)
    if dry:
        return
    rest = live[pos + 1 :]
    if rest:
        sn.commits[signer] = rest
    else:
        sn.commits.pop(signer, None)
    _store_weights(st, sn, uid, c.uids, c.values)
