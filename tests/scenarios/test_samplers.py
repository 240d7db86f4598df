"""Parameter spaces and samplers: units checked, seeded, space-filling, and a search that finds failures."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scenarios.mutations as m
from scenarios.mutations import (
    Choice,
    CrossEntropySampler,
    Grid,
    GridSampler,
    HaltonSampler,
    LatinHypercubeSampler,
    RandomSampler,
    SearchSpace,
    TruncNormal,
    Uniform,
    centered_l2_discrepancy,
)


def brake_and_cut_in() -> SearchSpace:
    """Three continuous dimensions in their operators' units."""
    return SearchSpace(
        [
            ("lead_brake", {"decel": Uniform(1.0, 10.0, "m/s2"), "onset_s": Uniform(0.0, 6.0, "s")}),
            ("cut_in", {"gap_m": Uniform(0.0, 40.0, "m"), "source": "clone"}),
        ]
    )


# ----------------------------------------------------------------------------- spaces


def test_space_keys_decode_into_a_chain():
    space = brake_and_cut_in()
    assert space.keys == ["lead_brake.decel", "lead_brake.onset_s", "cut_in.gap_m"]
    point = space.decode([0.5, 0.0, 0.25])
    assert point == {"lead_brake.decel": 5.5, "lead_brake.onset_s": 0.0, "cut_in.gap_m": 10.0}
    assert space.chain(point) == [("lead_brake", {"decel": 5.5, "onset_s": 0.0}), ("cut_in", {"source": "clone", "gap_m": 10.0})]
    twice = SearchSpace([("retime", {"scale": Uniform(0.5, 1.5)}), ("retime", {"scale": Uniform(0.5, 1.5)})])
    assert twice.keys == ["retime.scale", "retime#1.scale"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"decel": Uniform(1.0, 9.0, "m/s")}, "params.decel"),  # wrong unit
        ({"decel": Uniform(1.0, 9.0)}, "params.decel"),  # a number without its unit
        ({"decel": Uniform(1.0, 20.0, "m/s2")}, "params.decel"),  # beyond what the operator allows
        ({"onset_s": TruncNormal(2.0, 1.0, -1.0, 3.0, "s")}, "params.onset_s"),
        ({"agent": Choice(("lead", "random"), "m")}, "params.agent"),  # names have no unit
        ({"decel_max": Uniform(1.0, 9.0, "m/s2")}, "params.decel_max"),
    ],
)
def test_spaces_are_checked_against_the_operator(params, field):
    with pytest.raises(m.MutationError) as err:
        SearchSpace.single("lead_brake", **params)
    assert err.value.field == field


def test_unit_spellings_and_dimensionless_parameters():
    SearchSpace.single("lead_brake", decel=Uniform(1.0, 9.0, "m/s^2"), agent=Choice(("lead", "nearest")))
    SearchSpace.single("road_friction", mu=Choice((0.3, 0.9)))  # dimensionless: no unit needed
    SearchSpace.single("road_friction", mu=Grid((0.3, 0.6, 0.9), "-"))


@settings(max_examples=60, deadline=None)
@given(u=st.floats(0.0, 1.0, exclude_max=True), lo=st.floats(-50, 50), width=st.floats(0.1, 100))
def test_continuous_dimensions_map_the_unit_interval_onto_their_range(u, lo, width):
    for dim in (Uniform(lo, lo + width), TruncNormal(lo + width / 3, width / 4, lo, lo + width)):
        value = dim.from_unit(u)
        assert lo <= value <= lo + width
        assert dim.to_unit(value) == pytest.approx(u, abs=1e-6)


def test_truncated_normal_has_its_mean_and_bounds():
    dim = TruncNormal(2.0, 0.5, 1.0, 4.0, "s")
    values = np.array([dim.from_unit(u) for u in (np.arange(2000) + 0.5) / 2000])
    assert values.min() >= 1.0 and values.max() <= 4.0
    phi, cdf = NormalDist().pdf, NormalDist().cdf
    expected = 2.0 + 0.5 * (phi(-2.0) - phi(4.0)) / (cdf(4.0) - cdf(-2.0))  # truncation shifts the mean up
    assert values.mean() == pytest.approx(expected, abs=2e-3)


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("cls", [RandomSampler, HaltonSampler, LatinHypercubeSampler, CrossEntropySampler])
def test_samplers_are_seeded(cls):
    space = brake_and_cut_in()
    a, b, c = cls(space, seed=11).propose(16), cls(space, seed=11).propose(16), cls(space, seed=12).propose(16)
    assert a == b and a != c
    assert all(1.0 <= p["lead_brake.decel"] <= 10.0 and 0.0 <= p["cut_in.gap_m"] <= 40.0 for p in a)


def test_halton_continues_across_calls_and_latin_hypercube_is_stratified():
    space = brake_and_cut_in()
    whole = HaltonSampler(space, seed=1).propose_unit(40)
    parts = HaltonSampler(space, seed=1)
    np.testing.assert_array_equal(np.vstack([parts.propose_unit(15), parts.propose_unit(25)]), whole)
    u = LatinHypercubeSampler(space, seed=4).propose_unit(50)
    for j in range(3):
        assert sorted(np.floor(u[:, j] * 50).astype(int).tolist()) == list(range(50))


def test_unscrambled_halton_is_the_radical_inverse():
    np.testing.assert_allclose(m.halton(4, 2), [[0.5, 1 / 3], [0.25, 2 / 3], [0.75, 1 / 9], [0.125, 4 / 9]])


@pytest.mark.parametrize("seed", range(5))
def test_space_filling_samplers_have_lower_discrepancy_than_random(seed):
    space = brake_and_cut_in()
    budget = 128
    random = centered_l2_discrepancy(RandomSampler(space, seed).propose_unit(budget))
    assert centered_l2_discrepancy(HaltonSampler(space, seed).propose_unit(budget)) < 0.5 * random
    assert centered_l2_discrepancy(LatinHypercubeSampler(space, seed).propose_unit(budget)) < random


def test_centered_discrepancy_known_values():
    # one point at the centre of [0, 1]: (13/12) - 2 (1) + 1 = 1/12 in 1-D
    assert centered_l2_discrepancy(np.array([[0.5]])) == pytest.approx(np.sqrt(13 / 12 - 2 + 1))
    grid = (np.arange(64) + 0.5) / 64
    assert centered_l2_discrepancy(grid[:, None]) < centered_l2_discrepancy(np.sort(np.random.default_rng(0).random(64))[:, None])


def test_grid_sampler_visits_every_combination_once():
    space = SearchSpace.single("lead_brake", decel=Grid((3.0, 6.0, 9.0), "m/s2"), onset_s=Uniform(1.0, 3.0, "s"))
    sampler = GridSampler(space, points=3)
    assert sampler.size == 9
    points = sampler.propose(5) + sampler.propose(10)
    assert len(points) == 9 and sampler.propose(1) == []
    combos = {(p["lead_brake.decel"], p["lead_brake.onset_s"]) for p in points}
    assert combos == {(d, t) for d in (3.0, 6.0, 9.0) for t in (1.0, 2.0, 3.0)}


def test_make_sampler_by_name():
    space = brake_and_cut_in()
    assert isinstance(m.make_sampler("cem", space, 0, elite_frac=0.2), CrossEntropySampler)
    with pytest.raises(m.MutationError, match="unknown sampler"):
        m.make_sampler("annealing", space)
    with pytest.raises(m.MutationError):
        m.make_sampler("cem", space, 0, elite_fraction=0.2)


# ----------------------------------------------------------------------------- cross-entropy search


#: The planted failure: a ball around (8.2 m/s2, 1.3 s, 4 m), radius 5% of each range.
FAILURE_CENTRE = np.array([8.2, 1.3, 4.0])
RANGES = np.array([9.0, 6.0, 40.0])
RADIUS = 0.05


def synthetic_score(point: dict) -> float:
    """Lower is closer to failure; below 0 inside the planted region (0.05% of the space)."""
    x = np.array([point["lead_brake.decel"], point["lead_brake.onset_s"], point["cut_in.gap_m"]])
    return float(np.linalg.norm((x - FAILURE_CENTRE) / RANGES)) - RADIUS


def evaluations_to_failure(sampler, batch: int = 50, budget: int = 4000) -> int:
    """How many scored points until the first failure (``budget + 1`` when none is found)."""
    used = 0
    while used < budget:
        points = sampler.propose(batch)
        scores = [synthetic_score(p) for p in points]
        hits = [i for i, s in enumerate(scores) if s < 0]
        if hits:
            return used + hits[0] + 1
        used += len(points)
        sampler.update(points, scores)
    return budget + 1


@pytest.mark.parametrize("seed", range(4))
def test_cross_entropy_finds_a_planted_failure_in_fewer_evaluations_than_random(seed):
    space = brake_and_cut_in()
    cem = evaluations_to_failure(CrossEntropySampler(space, seed, elite_frac=0.1, smoothing=0.7))
    random = evaluations_to_failure(RandomSampler(space, seed))
    assert cem <= 400 and cem < random


def test_cross_entropy_update_moves_towards_low_scores():
    space = brake_and_cut_in()
    sampler = CrossEntropySampler(space, seed=0, elite_frac=0.2)
    points = sampler.propose(100)
    sampler.update(points, [synthetic_score(p) for p in points])
    assert np.linalg.norm(sampler.mean - space.encode(dict(zip(space.keys, FAILURE_CENTRE)))) < 0.35
    assert sampler.best[0] == min(synthetic_score(p) for p in points)
    sampler.update(points[:3], [float("nan"), 1.0, 2.0])  # NaN counts as the worst, not the best
    assert sampler.best[0] < 1.0
    with pytest.raises(ValueError):
        sampler.update(points[:2], [1.0])


# ----------------------------------------------------------------------------- rejections feed the search


def rejection_rates(sampler, rounds: int = 6, batch: int = 40) -> list[float]:
    """Share of each round's proposals in the infeasible half (decel below 5.5 m/s2) of the space."""
    rates = []
    for _ in range(rounds):
        points = sampler.propose(batch)
        scores = [m.REJECTED if p["lead_brake.decel"] < 5.5 else synthetic_score(p) for p in points]
        rates.append(sum(s == m.REJECTED for s in scores) / len(points))
        sampler.update(points, scores)
    return rates


@pytest.mark.parametrize("seed", range(3))
def test_rejected_proposals_teach_the_cross_entropy_search_the_feasible_region(seed):
    """Half the space is infeasible: the first (uniform) round is rejected about half the time,
    each later round less, and the last rounds almost never (a random sampler stays at a half)."""
    rates = rejection_rates(CrossEntropySampler(brake_and_cut_in(), seed, elite_frac=0.1))
    assert 0.3 <= rates[0] <= 0.7
    assert rates[1] < rates[0] and max(rates[2:]) <= 0.15 and rates[-1] <= 0.05
    assert min(rejection_rates(RandomSampler(brake_and_cut_in(), seed))) >= 0.3


def test_cross_entropy_never_takes_a_rejected_point_for_an_elite():
    space = brake_and_cut_in()
    sampler = CrossEntropySampler(space, seed=0, elite_frac=0.5)
    points = [space.decode([0.1, 0.5, 0.5]), space.decode([0.9, 0.2, 0.2]), space.decode([0.8, 0.4, 0.6])]
    sampler.update(points, [m.REJECTED, 0.5, 0.7])  # the rejected one would be "lowest" if it counted as 0
    assert sampler.mean.tolist() == pytest.approx([0.85, 0.3, 0.4])
    assert sampler.best == (0.5, points[1])
    before_mean, before_std = sampler.mean.copy(), sampler.std.copy()
    sampler.update(points[:1], [m.REJECTED])  # nothing feasible: the mean stays, the spread widens
    assert sampler.mean.tolist() == before_mean.tolist()
    assert np.all(sampler.std > before_std)
    fresh = CrossEntropySampler(space, seed=0)
    fresh.update(points[:1], [m.REJECTED])  # nothing learned yet: still uniform
    assert fresh.mean is None
