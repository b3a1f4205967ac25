"""Training-free architecture search: scores, search space, searcher."""
from .score import RandomScore, STEntrScore, refinement_factor

__all__ = ['STEntrScore', 'RandomScore', 'refinement_factor']
