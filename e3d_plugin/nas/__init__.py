"""Training-free architecture search: scores (STEntr-Score and the proxy
zoo), search space, searcher."""
from .builder import SearchBuild, build_search
from .evolution import (BUDGET_KEYS, Candidate, EntropyEvolution,
                        SearchError)
from .latency import LatencyError, LatencyTable
from .score import RandomScore, STEntrScore, refinement_factor
from .results import write_results
from .space import E3DSearchSpace
from .zoo import (FlopsScore, GradNormScore, LayersScore, NASWOTScore,
                  ParamsScore, SynFlowScore, ZenScore, ZiCoScore)

__all__ = ['STEntrScore', 'RandomScore', 'refinement_factor',
           'E3DSearchSpace', 'EntropyEvolution', 'SearchError',
           'BUDGET_KEYS', 'LatencyTable', 'LatencyError', 'Candidate',
           'write_results', 'build_search', 'SearchBuild', 'FlopsScore',
           'ParamsScore', 'LayersScore', 'ZenScore', 'NASWOTScore',
           'SynFlowScore', 'GradNormScore', 'ZiCoScore']
