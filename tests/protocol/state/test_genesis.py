"""Genesis JSON: strict parsing, canonical hash, State.from_genesis."""

from __future__ import annotations

import json

import pytest

from protocol.crypto import Keypair
from protocol.economics.emission import TOTAL_SUPPLY, UNIT
from protocol.state.genesis import Endpoint, GenesisError, build_genesis, parse_genesis
from protocol.state.state import State

A, B, C = (Keypair(bytes([i]) * 32) for i in (1, 2, 3))


def doc(**over):
    d = {
        "chain_id": "tn-test",
        "balances": {A.address: 5 * UNIT, B.public.hex(): 7},
        "stakes": [{"coldkey": A.address, "hotkey": C.address, "amount": 3}],
        "committee": [
            {"hotkey": B.address, "stake": 2 * UNIT, "peer_id": "12D3KooWx", "multiaddrs": ["/ip4/1.2.3.4/tcp/1"]}
        ],
        "subnets": [{"owner": A.address, "name": "text", "hyperparameters": {"tempo": 99}}],
        "emission": {"base_per_height": UNIT, "subnet_share": "stake"},
        "consensus": {"epoch_rounds": 500, "committee_size": 4, "committee_min_stake": UNIT},
        "network": {"max_subnets": 8},
    }
    d.update(over)
    return json.dumps(d)


def test_parse_and_state():
    g = parse_genesis(doc())
    assert g.chain_id == "tn-test" and g.epoch_rounds == 500 and g.subnet_share == "stake"
    assert g.subnets[0].hyperparams.tempo == 99 and g.committee[0].endpoint == Endpoint(
        "12D3KooWx", ("/ip4/1.2.3.4/tcp/1",)
    )
    st = State.from_genesis(g)
    assert st.issued == 5 * UNIT + 7 + 3 + 2 * UNIT == g.issued()
    assert st.balances[B.public] == 7 and st.stake_of(A.public, C.public) == 3
    assert st.subnet(1).owner == A.public and st.subnet(1).hp.tempo == 99
    (m,) = st.committee()
    assert m.hotkey == B.public and m.stake == 2 * UNIT and m.peer_id == "12D3KooWx"
    st.check_invariants()


def test_hash_canonical_and_sensitive():
    g = parse_genesis(doc())
    reordered = json.dumps(dict(reversed(list(json.loads(doc()).items()))), indent=4)
    assert parse_genesis(reordered).hash() == g.hash()
    assert parse_genesis(doc(chain_id="tn-other")).hash() != g.hash()
    assert parse_genesis(g.to_json()) == g and len(g.hash()) == 32
    assert State.from_genesis(g).params.genesis_hash == g.hash()


@pytest.mark.parametrize(
    "text, needle",
    [
        (doc(extra=1), "unknown key(s) extra"),
        ('{"chain_id": "x", "chain_id": "y"}', "duplicate key 'chain_id'"),
        (doc(chain_id=""), "chain_id: length 0"),
        (doc(balances={"tnbogus": 1}), "balances['tnbogus']"),
        (doc(balances={A.address: -1}), "is outside [0"),
        (doc(balances={A.address: 1.5}), "float"),
        (doc(stakes=[{"coldkey": A.address, "hotkey": C.address}]), "stakes[0]: missing key(s) amount"),
        (doc(committee=[]), "at least one validator"),
        (doc(committee=[{"hotkey": B.address, "stake": 1}]), "below consensus.committee_min_stake"),
        (doc(committee=[{"hotkey": B.address, "stake": UNIT, "multiaddrs": []}]), "without a peer_id"),
        (
            doc(committee=[{"hotkey": B.address, "stake": UNIT, "peer_id": "p", "multiaddrs": ["ip4"]}]),
            "not a multiaddr",
        ),
        (doc(subnets=[{"owner": A.address, "name": "x", "hyperparameters": {"kappa": 70000}}]), "kappa=70000"),
        (doc(subnets=[{"owner": A.address, "name": "x", "hyperparameters": {"tempoo": 1}}]), "unknown hyperparameter"),
        (doc(emission={"subnet_share": "random"}), "not one of equal, stake"),
        (doc(network={"max_subnets": 0}), "network.max_subnets is 0"),
        (doc(balances={A.address: TOTAL_SUPPLY}), "above the supply cap"),
        ("{not json", "not valid JSON"),
        ("[]", "expected an object"),
    ],
)
def test_strict_rejections(text, needle):
    with pytest.raises(GenesisError) as e:
        parse_genesis(text)
    assert needle in str(e.value)


def test_build_genesis_helper():
    g = build_genesis(
        "tn-built",
        validators=[(A.public, 2 * UNIT, Endpoint("12D3KooWa", ())), (B.public, 3 * UNIT)],
        balances={C.public: 9},
        subnets=[(C.public, "sn", {"tempo": 5})],
        base_emission=10,
    )
    assert g.base_emission == 10 and g.committee[1].endpoint is None and g.subnets[0].hyperparams.tempo == 5
    st = State.from_genesis(g)
    assert [m.hotkey for m in st.committee()] == [A.public]  # B has no endpoint: not eligible
    with pytest.raises(GenesisError):
        build_genesis("tn", validators=[])
