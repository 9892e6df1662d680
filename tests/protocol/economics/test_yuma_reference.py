"""The optimised epoch (protocol/economics/yuma.py) against the pre-optimisation one
(protocol/testing/yuma_reference.py): every
output, bit for bit, on random inputs (including the awkward ones: unsorted rows, mappings, columns >= n,
explicit zeros, commit-reveal masks) and on the benchmark's shape."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.yuma import make_inputs
from protocol.economics.yuma import EpochInputs, EpochParams, epoch
from protocol.testing import yuma_reference
from tests.protocol.economics.test_yuma import epoch_inputs


@st.composite
def awkward(draw: st.DrawFn) -> EpochInputs:
    inp = draw(epoch_inputs())
    n = len(inp.stakes)
    rnd = random.Random(draw(st.integers(0, 2**32)))
    extra = draw(st.integers(0, 2))  # columns past n: dropped, as subtensor's loaders do

    def mess(rows: list[list[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
        out = []
        for r in rows:
            r = list(r) + [(n + k, rnd.randint(0, 65535)) for k in range(extra)]
            rnd.shuffle(r)
            out.append(r)
        return out

    weights, bonds = mess(inp.weights), mess(inp.bonds)  # type: ignore[arg-type]
    as_map = draw(st.booleans())
    cr = draw(st.booleans())
    commits = [draw(st.none() | st.integers(0, inp.block)) for _ in range(n)] if cr else None
    return replace(
        inp,
        weights={i: r for i, r in enumerate(weights) if r} if as_map else weights,
        bonds={i: r for i, r in enumerate(bonds) if r} if as_map else bonds,
        params=replace(inp.params, commit_reveal_enabled=cr),
        commit_blocks=commits,
        last_epoch_block=draw(st.sampled_from([0, max(0, inp.block - 5)])),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(awkward())
def test_same_bits_as_reference(inp: EpochInputs) -> None:
    assert epoch(inp) == yuma_reference.epoch(inp)


def test_same_bits_on_the_bench_shape() -> None:
    for yuma3, liquid in ((True, True), (True, False), (False, False)):
        inp = make_inputs(300, 40, seed=3, yuma3=yuma3, liquid=liquid)
        assert epoch(inp) == yuma_reference.epoch(inp)
    inp = make_inputs(200, 30, seed=5)
    steep = replace(inp, params=EpochParams(alpha_sigmoid_steepness=-30000, liquid_alpha_enabled=True))
    assert epoch(steep) == yuma_reference.epoch(steep)
