"""Yuma Consensus epoch: subtensor's numeric scenarios (spec/vectors/yuma) and properties of ``epoch``."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.economics.yuma import (
    EpochInputs,
    EpochOutputs,
    EpochParams,
    activity_cutoff_blocks,
    epoch,
    max_upscale_u16,
)

VECTORS = Path(__file__).resolve().parents[3] / "spec" / "vectors" / "yuma"
U16 = 65535


# ----------------------------------------------------------------------------------------------------------
# Scenario runner: replays a subtensor test's timeline, carrying bonds and permits between epochs
# ----------------------------------------------------------------------------------------------------------


def _rows_from_json(d: dict[str, list[list[int]]], n: int) -> list[list[tuple[int, int]]]:
    rows: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for k, row in d.items():
        rows[int(k)] = [(int(j), int(v)) for j, v in row]
    return rows


def run_scenario(vec: dict[str, Any]) -> list[tuple[dict[str, Any], EpochOutputs]]:
    """Apply each step (set_weights -> storage as set_weights leaves it, bond resets, param changes, epoch)."""
    n = vec["n"]
    params = EpochParams(**vec["params"])
    init = vec["initial"]
    weights = _rows_from_json(init["weights"], n)
    bonds = _rows_from_json(init["bonds"], n)
    permits = list(init["validator_permits"])
    last_update = list(init["last_update"])
    registered = list(init["block_at_registration"])
    results = []
    for step in vec["steps"]:
        block = step["block"]
        for uid, row in step.get("set_weights", {}).items():
            uids = [j for j, _ in row]
            weights[int(uid)] = list(zip(uids, max_upscale_u16([v for _, v in row]), strict=True))
            last_update[int(uid)] = block
        for col in step.get("reset_bond_columns", []):
            bonds = [[(j, v) for j, v in row if j != col] for row in bonds]
        if "params" in step:
            params = replace(params, **step["params"])
        if step.get("epoch"):
            out = epoch(
                EpochInputs(
                    block=block,
                    stakes=vec["stakes"],
                    weights=weights,
                    bonds=bonds,
                    validator_permits=permits,
                    last_update=last_update,
                    block_at_registration=registered,
                    emission=vec["emission"],
                    params=params,
                    owner_uid=vec["owner_uid"],
                )
            )
            bonds = [list(r) for r in out.bonds]
            permits = list(out.validator_permits)
            results.append((step, out))
    return results


def _dense(row: tuple[tuple[int, int], ...], j: int) -> int:
    return dict(row).get(j, 0)


def check_expectations(name: str, step: dict[str, Any], out: EpochOutputs) -> list[str]:
    """Return a list of mismatch descriptions (empty: all good)."""
    exp = step.get("expect", {})
    bad: list[str] = []
    where = f"{name} block {step['block']} {step.get('comment', '')}"
    tol = exp.get("tolerance", 1e-3)
    for field_name, attr in (
        ("dividends_u16", "dividends"),
        ("consensus_u16", "consensus"),
        ("incentive_u16", "incentive"),
        ("subtensor_emission", "subtensor_emission"),
    ):
        for uid, want in exp.get(field_name, {}).items():
            got = getattr(out, attr)[int(uid)]
            if got != want:
                bad.append(f"{where}: {attr}[{uid}] = {got}, want {want}")
    for i, j, want in exp.get("bonds_u16", []):
        got = _dense(out.bonds[i], j)
        if got != want:
            bad.append(f"{where}: bonds[{i}][{j}] = {got}, want {want}")
    if "dividends" in exp:
        for uid, want in enumerate(exp["dividends"]):
            got = out.dividends[uid] / U16
            if abs(got - want) > tol:
                bad.append(f"{where}: dividend[{uid}] = {got:.4f}, want {want}")
    if "bonds" in exp:
        b = exp["bonds"]
        for ri, i in enumerate(b["rows"]):
            for ci, j in enumerate(b["cols"]):
                want = b["values"][ri][ci]
                # subtensor reads bonds back as u16 / 65535 (get_bonds_fixed_proportion)
                got = _dense(out.bonds[i], j) / U16
                if abs(got - want) > tol:
                    bad.append(f"{where}: bond[{i}][{j}] = {got:.4f}, want {want}")
    return bad


VECTOR_FILES = sorted(VECTORS.glob("*.json"))


def test_vectors_present() -> None:
    names = {p.stem for p in VECTOR_FILES}
    for want in (
        "yuma3_kappa_moves_first",
        "yuma3_kappa_moves_second",
        "yuma3_kappa_moves_last",
        "yuma3_one_epoch_switch",
        "yuma3_liquid_alpha_disabled",
        "yuma3_stable_miner",
        "yuma3_bonds_reset",
        "test_bonds",
        "test_active_stake",
        "test_10_graph",
    ):
        assert want in names


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def test_subtensor_vector(path: Path) -> None:
    vec = json.loads(path.read_text())
    results = run_scenario(vec)
    checked = sum(1 for step, _ in results if step.get("expect"))
    assert checked > 0
    bad: list[str] = []
    for step, out in results:
        bad += check_expectations(vec["name"], step, out)
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------------------------------------
# Focused behaviour
# ----------------------------------------------------------------------------------------------------------


def _simple(**kw: Any) -> EpochInputs:
    base: dict[str, Any] = dict(
        block=100,
        stakes=[100, 50, 0, 0],
        weights=[[(2, 65535), (3, 32768)], [(2, 65535)], [], []],
        bonds=[[], [], [], []],
        validator_permits=[True, True, False, False],
        last_update=[99, 99, 0, 0],
        block_at_registration=[0, 0, 0, 0],
        emission=1_000_000_007,
        params=EpochParams(tempo=10, activity_cutoff=50),
    )
    base.update(kw)
    return EpochInputs(**base)


def test_activity_cutoff_blocks() -> None:
    assert activity_cutoff_blocks(13889, 360) == 5000
    assert activity_cutoff_blocks(13889, 1) == 13
    assert activity_cutoff_blocks(0, 360) == 1


def test_permits_top_k_ties_drop_lower_uid() -> None:
    # subtensor sorts ascending (stable) and drops the first n-k: among equal stakes the lower uid loses.
    out = epoch(_simple(stakes=[5, 5, 5, 1], params=EpochParams(max_allowed_validators=2)))
    assert out.validator_permits == (False, True, True, False)


def test_owner_keeps_permit_and_self_weight() -> None:
    inp = _simple(
        stakes=[100, 50, 0, 0],
        weights=[[(2, 65535)], [(2, 65535)], [], [(3, 65535)]],
        validator_permits=[True, True, False, False],
        last_update=[99, 99, 0, 99],
        owner_uid=3,
        params=EpochParams(max_allowed_validators=1),
    )
    out = epoch(inp)
    assert out.validator_permits == (True, False, False, True)


def test_zero_emission_sum_goes_to_active_stake() -> None:
    out = epoch(_simple(weights=[[], [], [], []]))
    assert sum(out.miner_emission) == 0
    assert out.validator_emission[0] + out.validator_emission[1] == 1_000_000_007
    # 2:1 stake, as I32F32 proportions (floor(2/3 * 2^32) : floor(1/3 * 2^32)), split exactly
    assert abs(out.validator_emission[0] - 2 * out.validator_emission[1]) <= 2


def test_no_stake_is_unallocated() -> None:
    out = epoch(_simple(stakes=[0, 0, 0, 0]))
    assert out.unallocated == 1_000_000_007
    assert sum(out.miner_emission) + sum(out.validator_emission) == 0


def test_bad_inputs_rejected() -> None:
    with pytest.raises(ValueError):
        epoch(_simple(weights=[[(2, 1), (2, 5)], [], [], []]))
    with pytest.raises(ValueError):
        epoch(_simple(weights=[[(2, 70000)], [], [], []]))
    with pytest.raises(ValueError):
        epoch(_simple(last_update=[1, 2]))


def test_outdated_weights_are_masked() -> None:
    # uid 2 re-registered at block 99 after the validators' last update at 98: their weights on it drop.
    out = epoch(_simple(last_update=[98, 98, 0, 0], block_at_registration=[0, 0, 99, 0]))
    assert out.incentive[2] == 0
    assert out.incentive[3] == U16


def test_commit_reveal_mask() -> None:
    p = EpochParams(tempo=10, activity_cutoff=50, commit_reveal_enabled=True)
    out = epoch(_simple(params=p, block_at_registration=[0, 0, 50, 0], commit_blocks=[40, None, None, None]))
    # uid 0 committed at 40, before uid 2 registered at 50: its weight on uid 2 is masked.
    base = epoch(_simple(params=replace(p, commit_reveal_enabled=False), block_at_registration=[0, 0, 50, 0]))
    assert out.incentive != base.incentive


# ----------------------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------------------


@st.composite
def epoch_inputs(draw: st.DrawFn) -> EpochInputs:
    n = draw(st.integers(min_value=1, max_value=12))
    stakes = draw(st.lists(st.integers(min_value=0, max_value=10**15), min_size=n, max_size=n))
    block = draw(st.integers(min_value=0, max_value=10_000))
    uid = st.integers(min_value=0, max_value=n - 1)
    u16 = st.integers(min_value=0, max_value=U16)

    def row() -> list[tuple[int, int]]:
        cols = draw(st.lists(uid, unique=True, max_size=n))
        return [(j, draw(u16)) for j in cols]

    weights = [row() for _ in range(n)]
    bonds = [row() for _ in range(n)]
    params = EpochParams(
        tempo=draw(st.integers(min_value=1, max_value=400)),
        activity_cutoff=draw(st.integers(min_value=1, max_value=5000)),
        kappa=draw(u16),
        bonds_moving_average=draw(st.integers(min_value=0, max_value=1_000_000)),
        bonds_penalty=draw(u16),
        liquid_alpha_enabled=draw(st.booleans()),
        alpha_low=draw(st.integers(min_value=1638, max_value=30000)),
        alpha_high=draw(st.integers(min_value=30000, max_value=U16)),
        alpha_sigmoid_steepness=draw(st.integers(min_value=-32768, max_value=32767)),
        max_allowed_validators=draw(st.integers(min_value=0, max_value=n + 1)),
        yuma3=draw(st.booleans()),
        stake_threshold=draw(st.integers(min_value=0, max_value=10**6)),
    )
    return EpochInputs(
        block=block,
        stakes=stakes,
        weights=weights,
        bonds=bonds,
        validator_permits=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        last_update=draw(st.lists(st.integers(min_value=0, max_value=block), min_size=n, max_size=n)),
        block_at_registration=draw(st.lists(st.integers(min_value=0, max_value=block), min_size=n, max_size=n)),
        emission=draw(st.integers(min_value=0, max_value=2**64 - 1)),
        params=params,
        owner_uid=draw(st.none() | uid),
    )


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(epoch_inputs())
def test_property_emission_conserved_and_ranges(inp: EpochInputs) -> None:
    out = epoch(inp)
    n = len(inp.stakes)
    total = sum(out.miner_emission) + sum(out.validator_emission)
    assert total + out.unallocated == inp.emission
    if sum(inp.stakes) > 0 and any(s >= inp.params.stake_threshold for s in inp.stakes):
        assert out.unallocated == 0 or sum(out.subtensor_emission) == 0
    assert all(x >= 0 for x in out.miner_emission + out.validator_emission)
    for name in ("stake_weight", "consensus", "incentive", "dividends", "validator_trust", "rank", "trust"):
        vals = getattr(out, name)
        assert len(vals) == n
        assert all(0 <= v <= U16 for v in vals), name
    assert len(out.bonds) == n
    for i, row in enumerate(out.bonds):
        assert all(0 <= j < n and 0 <= v <= U16 for j, v in row)
        assert [j for j, _ in row] == sorted({j for j, _ in row})
        if not out.validator_permits[i]:
            assert row == ()
    assert sum(out.subtensor_emission) <= inp.emission


@PROPS
@given(epoch_inputs(), st.randoms(use_true_random=False))
def test_property_deterministic_and_order_free(inp: EpochInputs, rnd: random.Random) -> None:
    out = epoch(inp)
    assert epoch(inp) == out
    shuffled_w = [rnd.sample(list(r), len(r)) for r in inp.weights]  # type: ignore[union-attr]
    shuffled_b = [rnd.sample(list(r), len(r)) for r in inp.bonds]  # type: ignore[union-attr]
    keys = list(range(len(inp.stakes)))
    rnd.shuffle(keys)
    as_dict_w = {k: shuffled_w[k] for k in keys}
    as_dict_b = {k: shuffled_b[k] for k in reversed(keys)}
    assert epoch(replace(inp, weights=as_dict_w, bonds=as_dict_b)) == out


@settings(max_examples=40, deadline=None)
@given(epoch_inputs())
def test_property_emission_split_follows_shares(inp: EpochInputs) -> None:
    out = epoch(inp)
    # each paid amount is within one unit of subtensor's floored figure scaled by the same share
    for i in range(len(inp.stakes)):
        assert out.miner_emission[i] + out.validator_emission[i] + 1 >= out.subtensor_server_emission[i]
