"""Rank study: does a training-free proxy rank architectures as training
does? Sample structures of a search space, train each with several seeds,
correlate every proxy with the trained accuracy. Search-outcome trials
(:mod:`e3d_plugin.study.trials`): search with every score, train what each
finds, compare with the FLOPs search. The run queue
(:mod:`e3d_plugin.study.queue`) trains the runs of every study."""
from .queue import (Run, RunQueue, check_queue_options, failure_reason,
                    read_iteration_times)
from .report import format_table, make_report, write_report
from .results import append_result, finished_runs, read_results
from .runner import (KNOWN_PROXIES, NETWORK_PROXIES, PROXIES, RankStudy,
                     read_accuracy, read_scalars, write_run_config)
from .sampler import StudyError, build_searcher, sample_architectures
from .stats import rank_correlation, top_k_overlap, trained_rank
from .trials import SearchTrials, permutation_pvalue

__all__ = ['RankStudy', 'StudyError', 'PROXIES', 'NETWORK_PROXIES',
           'KNOWN_PROXIES', 'build_searcher',
           'sample_architectures', 'rank_correlation', 'trained_rank',
           'top_k_overlap', 'append_result', 'read_results',
           'finished_runs', 'make_report', 'write_report', 'format_table',
           'read_accuracy', 'read_scalars', 'write_run_config', 'Run',
           'RunQueue', 'check_queue_options', 'failure_reason',
           'read_iteration_times', 'SearchTrials', 'permutation_pvalue']
