"""Seeded samplers over a ``SearchSpace``: random, Halton, Latin hypercube, grid, cross-entropy.

Every sampler works in the unit cube of the space's dimensions and returns decoded points
(``{"operator.param": value}``). All randomness comes from ``np.random.default_rng(seed)``: the
same seed and the same calls give the same points. ``update(points, scores, failed)`` feeds back
scores (lower = closer to failure) and, optionally, which points made the planner fail; only
the cross-entropy sampler uses them. A score of
``REJECTED`` (+inf) marks a proposal that could not be simulated (implausible, inapplicable):
it is worse than any real score, so an adaptive sampler learns to avoid the infeasible region.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from scenarios.common import Registry
from scenarios.mutations.base import MutationError
from scenarios.mutations.spaces import SearchSpace

Point = dict[str, Any]

#: The score of a proposal rejected before simulation: worse than any real (finite) score.
REJECTED = math.inf

#: Samplers by name: ``@SAMPLERS.decorator("mine")`` on a ``Sampler`` subclass (a plug-in's) makes
#: ``sampler = "mine"`` work in a suite.
SAMPLERS: Registry[Callable[..., Sampler]] = Registry(
    "sampler", unknown=lambda name, message: MutationError("sampler", "sampler", message)
)


def _primes(count: int) -> list[int]:
    out: list[int] = []
    k = 2
    while len(out) < count:
        if all(k % p for p in out if p * p <= k):
            out.append(k)
        k += 1
    return out


def halton(n: int, d: int, *, start: int = 1, seed: int | None = None) -> np.ndarray:
    """(n, d) points of the Halton sequence, indices ``start .. start + n - 1``.

    With a ``seed`` the digits of each base are randomly permuted (0 kept in place), a
    scrambling that keeps the low discrepancy and breaks the correlation of large bases.
    """
    bases = _primes(d)
    rng = np.random.default_rng(seed) if seed is not None else None
    out = np.zeros((n, d))
    for j, b in enumerate(bases):
        perm = np.arange(b)
        if rng is not None:
            perm[1:] = rng.permutation(np.arange(1, b))
        idx = np.arange(start, start + n, dtype=np.int64)
        f = 1.0 / b
        value = np.zeros(n)
        while (idx > 0).any():
            value += perm[idx % b] * f
            idx //= b
            f /= b
        out[:, j] = value
    return out


def latin_hypercube(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) Latin hypercube points: each dimension has one point in each of n strata."""
    return (np.argsort(rng.random((d, n)), axis=1).T + rng.random((n, d))) / n


def centered_l2_discrepancy(u: np.ndarray) -> float:
    """Hickernell's centred L2 discrepancy of (n, d) points in [0, 1]^d (lower = more uniform)."""
    u = np.asarray(u, float)
    n, d = u.shape
    a = np.abs(u - 0.5)
    term1 = (13.0 / 12.0) ** d
    term2 = np.prod(1 + 0.5 * a - 0.5 * a**2, axis=1).sum() * 2.0 / n
    pair = 1 + 0.5 * a[:, None, :] + 0.5 * a[None, :, :] - 0.5 * np.abs(u[:, None, :] - u[None, :, :])
    term3 = np.prod(pair, axis=2).sum() / n**2
    return float(math.sqrt(max(term1 - term2 + term3, 0.0)))


class Sampler(ABC):
    """Proposes points of a ``SearchSpace``; ``update`` feeds back their scores."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    @abstractmethod
    def propose_unit(self, n: int) -> np.ndarray:
        """(m, d) unit-cube coordinates of the next points (m = n unless the sampler runs out)."""

    def propose(self, n: int) -> list[Point]:
        """The next ``n`` points (fewer only when a grid runs out)."""
        return [self.space.decode(row) for row in self.propose_unit(n)]

    def update(self, points: Sequence[Mapping[str, Any]], scores: Sequence[float], failed: Sequence[bool] | None = None) -> None:
        """Feed back scores of evaluated points (lower = closer to failure) and which of them
        made the planner fail (a new failure or a repeat of one); a no-op unless adaptive."""


@SAMPLERS.decorator("random")
class RandomSampler(Sampler):
    """Independent uniform points in the unit cube."""

    def propose_unit(self, n: int) -> np.ndarray:
        return self.rng.random((n, self.space.dim))


@SAMPLERS.decorator("halton")
class HaltonSampler(Sampler):
    """The scrambled Halton sequence (seeded), continued across calls."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self._next = 1

    def propose_unit(self, n: int) -> np.ndarray:
        out = halton(n, self.space.dim, start=self._next, seed=self.seed)
        self._next += n
        return out


@SAMPLERS.decorator("lhs")
class LatinHypercubeSampler(Sampler):
    """A Latin hypercube per call (each call's batch is stratified on its own)."""

    def propose_unit(self, n: int) -> np.ndarray:
        return latin_hypercube(n, self.space.dim, self.rng)


@SAMPLERS.decorator("grid")
class GridSampler(Sampler):
    """Every combination of the dimensions' grid values, in order (``points`` per continuous dimension)."""

    def __init__(self, space: SearchSpace, seed: int = 0, points: int = 5) -> None:
        super().__init__(space, seed)
        per_axis = [[a.dim.to_unit(v) for v in a.dim.grid(points)] for a in space.axes]
        self._cells = np.array(list(itertools.product(*per_axis)), float).reshape(-1, space.dim)
        self._next = 0

    @property
    def size(self) -> int:
        return len(self._cells)

    def propose_unit(self, n: int) -> np.ndarray:
        out = self._cells[self._next : self._next + n]
        self._next += len(out)
        return out


@SAMPLERS.decorator("cem")
class CrossEntropySampler(Sampler):
    """The cross-entropy method: a Gaussian in the unit cube moved towards the lowest scores.

    The first batch is uniform. Each ``update`` fits mean and standard deviation to the elite
    (the ``elite_frac`` of points with the lowest scores, at least ``min_elite``) and moves the
    sampling distribution there: ``new = smoothing * elite + (1 - smoothing) * old``. The
    standard deviation never falls below ``min_std`` so that the search keeps exploring.
    NaN scores count as the worst real scores. Proposals outside the cube are redrawn (then
    clipped).

    Rejected proposals (score ``REJECTED``) are never elite: the elite is drawn from the feasible
    points only, so the distribution moves into the feasible region and the share of rejected
    proposals falls round over round. An elite of one point keeps the previous spread (a uniform
    one's, 1/sqrt(12), before the first fit); a batch with no feasible point leaves the mean
    where it was and widens the spread by ``widen`` (up to the uniform one's) to look further.

    Novelty, once ``update`` was told of points that made the planner fail (``failed``): a
    Gaussian concentrates on one failure, but a falsifier wants every distinct one, and
    failures nearby in parameters are mostly the same failure again. So a share ``infill`` of
    each batch *fills in* around the failing points instead: ``candidates`` draws per point from
    Gaussians of spread ``infill_std`` around failing points (taken in turn), of which it keeps,
    one at a time, the one farthest from every point proposed so far (evaluated, rejected, or
    kept in this batch). The failures' neighbourhood is covered evenly, never twice in one
    place, and the search reaches failures at other times and places next to the known ones
    (a failure region is mostly connected). A share ``explore`` looks elsewhere: the farthest of
    uniform candidates from everything tried (a failure region far from the known ones); the
    rest of the batch follows the Gaussian.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        *,
        elite_frac: float = 0.1,
        smoothing: float = 0.7,
        min_std: float = 0.02,
        min_elite: int = 2,
        widen: float = 1.5,
        infill: float = 0.6,
        explore: float = 0.2,
        infill_std: float = 0.12,
        candidates: int = 24,
    ) -> None:
        super().__init__(space, seed)
        if not 0 < elite_frac <= 1:
            raise MutationError("sampler cem", "elite_frac", f"must be in (0, 1], got {elite_frac}")
        if not 0 < smoothing <= 1:
            raise MutationError("sampler cem", "smoothing", f"must be in (0, 1], got {smoothing}")
        self.elite_frac = elite_frac
        self.smoothing = smoothing
        self.min_std = min_std
        self.min_elite = min_elite
        if not widen >= 1:
            raise MutationError("sampler cem", "widen", f"must be >= 1, got {widen}")
        self.widen = widen
        if not 0 <= infill <= 1:
            raise MutationError("sampler cem", "infill", f"must be in [0, 1], got {infill}")
        if not 0 <= explore <= 1:
            raise MutationError("sampler cem", "explore", f"must be in [0, 1], got {explore}")
        if not infill_std > 0:
            raise MutationError("sampler cem", "infill_std", f"must be > 0, got {infill_std}")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise MutationError("sampler cem", "candidates", f"must be an integer >= 1, got {candidates!r}")
        self.infill, self.explore, self.infill_std, self.candidates = infill, explore, infill_std, candidates
        self._tried: list[np.ndarray] = []  # every unit point fed back
        self._failing: list[np.ndarray] = []  # ... of those, the ones that made the planner fail
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.best: tuple[float, Point] | None = None

    def propose_unit(self, n: int) -> np.ndarray:
        d = self.space.dim
        if self.mean is None or self.std is None:
            return self.rng.random((n, d))
        if not self._failing:
            return self._gaussian(n)
        k = int(round(self.infill * n))
        m = min(int(round(self.explore * n)), n - k)
        centres = np.array(self._failing)[np.arange(k * self.candidates) % len(self._failing)]  # the failing points in turn
        around = np.clip(self.rng.normal(centres, self.infill_std), 0.0, np.nextafter(1.0, 0.0))
        picked = self._farthest(around, k, np.array(self._tried).reshape(-1, d))
        far = self._farthest(self.rng.random((m * self.candidates, d)), m, np.vstack([np.array(self._tried).reshape(-1, d), picked]))
        return np.vstack([picked, far, self._gaussian(n - k - m)])

    def _farthest(self, pool: np.ndarray, k: int, tried: np.ndarray) -> np.ndarray:
        """``k`` points of ``pool``, one at a time each the farthest from ``tried`` and those picked before."""
        nearest = np.full(len(pool), np.inf)
        if len(tried) and len(pool):
            nearest = np.min(np.linalg.norm(pool[:, None, :] - tried[None, :, :], axis=2), axis=1)
        out = np.empty((k, pool.shape[1]))
        for i in range(k):
            j = int(np.argmax(nearest))
            out[i] = pool[j]
            nearest = np.minimum(nearest, np.linalg.norm(pool - pool[j], axis=1))
        return out

    def _gaussian(self, n: int) -> np.ndarray:
        """``n`` draws of the fitted Gaussian, redrawn (then clipped) into the unit cube."""
        d = self.space.dim
        assert self.mean is not None and self.std is not None
        out = self.rng.normal(self.mean, self.std, size=(n, d))
        for _ in range(10):
            bad = (out < 0) | (out >= 1)
            if not bad.any():
                break
            out[bad] = self.rng.normal(np.broadcast_to(self.mean, out.shape)[bad], np.broadcast_to(self.std, out.shape)[bad])
        return np.clip(out, 0.0, np.nextafter(1.0, 0.0))

    def update(self, points: Sequence[Mapping[str, Any]], scores: Sequence[float], failed: Sequence[bool] | None = None) -> None:
        if len(points) != len(scores) or (failed is not None and len(failed) != len(points)):
            raise ValueError(f"{len(points)} points but {len(scores)} scores" + (f" and {len(failed)} failure flags" if failed is not None else ""))
        if not points:
            return
        u = np.array([self.space.encode(p) for p in points]).reshape(len(points), self.space.dim)
        self._tried.extend(u)
        self._failing.extend(u[i] for i, f in enumerate(failed or ()) if f)
        s = np.array(scores, float)
        feasible = ~(np.isposinf(s))
        s = np.where(np.isnan(s), np.finfo(float).max, s)  # the worst real score, still feasible
        uniform_std = np.full(self.space.dim, 1.0 / math.sqrt(12.0))
        if not feasible.any():
            if self.std is not None:
                self.std = np.minimum(self.std * self.widen, np.maximum(uniform_std, self.std))
            return
        order = [i for i in np.argsort(s, kind="stable") if feasible[i]]
        if self.best is None or s[order[0]] < self.best[0]:
            self.best = (float(s[order[0]]), dict(points[order[0]]))
        k = min(len(order), max(self.min_elite, int(math.ceil(self.elite_frac * len(points)))))
        elite = u[order[:k]]
        previous = uniform_std if self.std is None else self.std
        mean, std = elite.mean(axis=0), (elite.std(axis=0) if k > 1 else previous)
        if self.mean is None or self.std is None:
            self.mean, self.std = mean, np.maximum(std, self.min_std)
        else:
            a = self.smoothing
            self.mean = a * mean + (1 - a) * self.mean
            self.std = np.maximum(a * std + (1 - a) * self.std, self.min_std)


def make_sampler(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Sampler:
    """The sampler called ``name`` (random, halton, lhs, grid, cem, or a plug-in's) over ``space``."""
    make = SAMPLERS.get(name)
    try:
        return make(space, seed, **options)
    except TypeError as exc:
        raise MutationError("sampler", "sampler_options", f"{name}: {exc}") from None
