"""What a search holds while it runs: its members, its curve, its state,
and the error a search raises.

:mod:`e3d_plugin.nas.evolution` (the searcher) and
:mod:`e3d_plugin.nas.results` (the checkpoint that saves and restores a
:class:`SearchState`) both import these from here, so neither imports the
other's module to get them.
"""
from typing import NamedTuple

from ..structure import Structure


class SearchError(ValueError):
    """A search cannot run as configured (budget, checkpoint, config)."""


class Candidate(NamedTuple):
    """A member of the population. Ordered by ``score``, then by ``order``
    (the admission count, unique), so a heap never compares structures."""

    score: float
    order: int
    structure: Structure
    cost: dict


class CurvePoint(NamedTuple):
    """The population after ``done`` candidates: best and median score."""

    done: int
    best: float
    median: float


class SearchState:
    """Everything a run changes, and so everything a checkpoint holds.

    ``population`` is a min-heap of :class:`Candidate` (its list order
    matters: parents are drawn by index); ``members`` the set of its
    structures; ``rng`` the search's ``random.Random``.
    """

    __slots__ = ('done', 'order', 'population', 'members', 'best', 'curve',
                 'rng', 'elapsed_s')

    def __init__(self, done, order, population, best, curve, rng,
                 elapsed_s=0.0):
        self.done = done
        self.order = order
        self.population = population
        self.members = {candidate.structure for candidate in population}
        self.best = best
        self.curve = curve
        self.rng = rng
        self.elapsed_s = elapsed_s


__all__ = ['SearchError', 'Candidate', 'CurvePoint', 'SearchState']
