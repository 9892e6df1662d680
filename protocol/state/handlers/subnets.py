"""Subnets and their neurons: create_subnet (replacing the weakest at the limit), register (burned
registration, caps, pruning), serve_axon (subnet axons and validators' consensus endpoints) and
set_hyperparameter (spec/state.md §3, spec/economics.md §1)."""

from __future__ import annotations

from protocol import crypto
from protocol.economics.hyperparams import U16_MAX
from protocol.economics.pricing import bumped_burn
from protocol.errors import TxRejected
from protocol.messages import CreateSubnet, Register, ServeAxon, SetHyperparameter
from protocol.state import lifecycle
from protocol.state.genesis import Endpoint
from protocol.state.lifecycle import Deregistration
from protocol.state.state import ROOT_NETUID, Neuron, State, Subnet, burn_start

_PEER_ID_CHARS = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")  # base58btc


def tx_create_subnet(st: State, signer: bytes, c: CreateSubnet, dry: bool) -> None:
    if not c.name.strip():
        raise TxRejected("subnet name", "subnet name must not be blank")
    victims = lifecycle.subnets_to_replace(
        [lifecycle.SubnetInfo(n, sn.created_at, st.lifecycle.scores.get(n, 0)) for n, sn in st.subnets.items()],
        height=st.height,
        max_subnets=st.params.max_subnets,
        immunity_period=st.params.subnet_immunity_period,
    )
    price = st.subnet_price_at(st.height)
    if price > c.max_burn:
        raise TxRejected(
            "price limit",
            f"subnet price is {price}, above max_burn {c.max_burn}; "
            "the price falls each height until it reaches the floor",
        )
    st.need_balance(signer, price, "create_subnet")
    if dry:
        return
    for victim in victims:
        deregister(st, victim, signer)
    netuid = next(n for n in range(1, 65536) if n not in st.subnets)
    st.debit(signer, price)
    st.burned += price
    st.subnet_last_price, st.subnet_last_height = price, st.height
    hp = st.governance.default_hp
    st.subnets[netuid] = Subnet(
        netuid, c.name, signer, st.height, hp, burn_start(hp), reg_interval_start=st.height
    )
    st.lifecycle.scores[netuid] = 0


def _registration_caps(st: State, sn: Subnet, dry: bool) -> None:
    """subtensor's burned-registration caps: fewer than max_registrations_per_block at this height and
    fewer than 3 x target_registrations_per_interval since the interval began (65535: no cap). A dry
    run (mempool) judges the next height, as apply_commit's step 1 will leave the counters there."""
    hp = sn.hp
    at, in_block = st.height, sn.regs_this_block
    start, in_interval = sn.reg_interval_start, sn.regs_this_interval
    if dry:
        at, in_block = st.height + 1, 0
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


def tx_register(st: State, signer: bytes, c: Register, dry: bool) -> None:
    sn = st.need_subnet(c.netuid)
    _registration_caps(st, sn, dry)
    if c.hotkey in sn.uid_of:
        raise TxRejected(
            "already registered",
            f"hotkey {crypto.address(c.hotkey)} already has uid {sn.uid_of[c.hotkey]} on subnet {c.netuid}",
        )
    owner = st.hotkey_owner.get(c.hotkey, signer)
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
    st.need_balance(signer, price, "register")
    prune = None
    if len(sn.neurons) >= sn.hp.max_allowed_uids:
        prune = _neuron_to_prune(st, sn)
        if prune is None:
            raise TxRejected("subnet full", f"subnet {c.netuid} has {len(sn.neurons)} uids and none can be pruned")
    if dry:
        return
    st.hotkey_owner.setdefault(c.hotkey, signer)
    st.debit(signer, price)
    st.burned += price
    neuron = Neuron(c.hotkey, signer, st.height)
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


def _neuron_to_prune(st: State, sn: Subnet) -> int | None:
    """subtensor's get_neuron_to_prune: lowest emission, then earliest registration, then lowest uid;
    non-immune uids first while more than min_non_immune_uids of them remain, else immune ones."""
    best_free: tuple[int, int, int] | None = None
    best_immune: tuple[int, int, int] | None = None
    free = 0
    for uid, n in enumerate(sn.neurons):
        key = (n.emission, n.registered_at, uid)
        if st.height - n.registered_at < sn.hp.immunity_period:
            best_immune = key if best_immune is None or key < best_immune else best_immune
        else:
            free += 1
            best_free = key if best_free is None or key < best_free else best_free
    if best_free is not None and free > sn.hp.min_non_immune_uids:
        return best_free[2]
    return None if best_immune is None else best_immune[2]


def tx_serve_axon(st: State, signer: bytes, c: ServeAxon, dry: bool) -> None:
    if not c.peer_id or not set(c.peer_id) <= _PEER_ID_CHARS:
        raise TxRejected("peer id", f"peer id {c.peer_id!r} is not a base58 libp2p peer id")
    for i, a in enumerate(c.multiaddrs):
        if not a.startswith("/") or any(ch.isspace() for ch in a):
            raise TxRejected("multiaddr", f"multiaddrs[{i}] = {a!r} is not a multiaddr")
    ep = Endpoint(c.peer_id, tuple(c.multiaddrs))
    if c.netuid == ROOT_NETUID:
        stake = st.hotkey_stake.get(signer, 0)
        if stake == 0:
            raise TxRejected(
                "not staked",
                f"hotkey {crypto.address(signer)} has no stake; a consensus "
                "endpoint is for validators (stake first)",
            )
        if not dry:
            st.endpoints[signer] = ep
        return
    sn = st.need_subnet(c.netuid)
    neuron = sn.neurons[st.need_uid(sn, signer)]
    now, limit, last = st.height + 1 if dry else st.height, sn.hp.serving_rate_limit, neuron.served_at
    if limit and last and now - last < limit:
        raise TxRejected(
            "serving rate limit",
            f"axon last served at height {last}, next allowed at {last + limit}, now {now} "
            f"(serving_rate_limit {limit} on subnet {sn.netuid})",
        )
    if not dry:
        neuron.axon, neuron.served_at = ep, st.height


def tx_set_hyperparameter(st: State, signer: bytes, c: SetHyperparameter, dry: bool) -> None:
    sn = st.need_subnet(c.netuid)
    if signer != sn.owner:
        raise TxRejected(
            "not owner", f"only subnet {c.netuid}'s owner {crypto.address(sn.owner)} may set hyperparameters"
        )
    hp = sn.hp.with_value(c.name, c.value, n_uids=len(sn.neurons))
    if not dry:
        sn.hp = hp
        sn.burn = max(hp.min_burn, min(hp.max_burn, sn.burn))


def deregister(st: State, netuid: int, replaced_by: bytes) -> Deregistration:
    """Remove subnet `netuid` from `st`, settle its funds, and record it (spec/economics.md §1.3).

    1. The pending owner pot goes to the owner's balance.
    2. The pending miner and validator pots go to the hotkey owners' balances by `final_payout`; if no uid
       was paid at the last epoch they return to the unissued supply (`issued` decreases).
    3. The subnet, its neurons, weights, bonds, commits and score are removed.
    4. Each of its hotkeys that is now registered on no subnet and has no consensus endpoint has every
       stake position on it closed, in (coldkey, hotkey) order: the stake moves to the coldkey's balance.
    """
    sn = st.subnets[netuid]
    owner_paid = sn.pending_owner
    st.credit(sn.owner, owner_paid)
    pot = sn.pending_miners + sn.pending_validators
    shares = lifecycle.final_payout(pot, [n.emission for n in sn.neurons])
    neurons_paid = unissued = 0
    if shares is None:
        unissued = pot
        st.issued -= pot
    else:
        neurons_paid = pot
        for n, share in zip(sn.neurons, shares, strict=True):
            st.credit(st.hotkey_owner.get(n.hotkey, n.coldkey), share)
    sn.pending_owner = sn.pending_miners = sn.pending_validators = 0
    del st.subnets[netuid]
    score = st.lifecycle.scores.pop(netuid, 0)
    registered = {n.hotkey for other in st.subnets.values() for n in other.neurons}
    closing = {n.hotkey for n in sn.neurons if n.hotkey not in registered and n.hotkey not in st.endpoints}
    returned = positions = 0
    for (cold, hot), amount in sorted(st.stakes.items()):
        if hot in closing:
            st.sub_stake(cold, hot, amount)
            st.credit(cold, amount)
            returned += amount
            positions += 1
    record = Deregistration(
        netuid, sn.name, sn.owner, sn.created_at, st.height, replaced_by, score, len(sn.neurons), owner_paid,
        neurons_paid, unissued, returned, positions,
    )
    st.lifecycle.history.append(record)
    return record
