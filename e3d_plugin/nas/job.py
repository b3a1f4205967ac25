"""A search from a config file, as ``tools/search.py`` runs it: load the
config (``--cfg-options`` merged in), check it, build the searcher, run it
into a work dir and write the results there.

Every check that can come first does, so a bad input raises one line
(:class:`~e3d_plugin.nas.SearchError`, or the ``ValueError`` /
``TypeError`` of a constructor) before the work dir is touched. A family of
searches (one config naming several) is :mod:`e3d_plugin.nas.family`'s.
"""
import os
import os.path as osp
import time

from mmengine.logging import MMLogger

from ..launch import LaunchError, load_config, merge_cfg_options
from .builder import build_search, check_search_config
from .results import (score_label, train_base_backbone,
                      write_results)
from .state import SearchError

#: The options of a family config that are its own; the rest go to its
#: members.
FAMILY_OPTION_KEYS = ('family', 'work_dir')


def merge_search_options(cfg, cfg_options):
    """``cfg_options`` merged into the loaded ``cfg``, keys it has only
    (:class:`SearchError` for a key it lacks or a value that cannot land).
    """
    try:
        return merge_cfg_options(cfg, cfg_options, known_keys_only=True)
    except LaunchError as e:
        raise SearchError(str(e)) from None


def load_search_config(path, cfg_options=None):
    """The config at ``path`` with ``cfg_options`` merged in (a key the
    config lacks is refused); :class:`SearchError` with one line."""
    try:
        return merge_search_options(load_config(path), cfg_options)
    except LaunchError as e:
        raise SearchError(str(e)) from None


def is_family(cfg):
    """Whether ``cfg`` is a family config (it sets ``family``)."""
    return cfg.get('family') is not None


def load_search_job(config_path, cfg_options=None, work_dir=None):
    """``(cfg, work_dir)`` of a search (or family) config file.

    ``cfg_options`` is merged in; a family config takes only its own
    (``family``, ``work_dir``: its members take the rest as they load). The
    work dir is ``work_dir``, else the config's ``work_dir``, else
    ``./work_dirs/<config name>``.
    """
    cfg = load_search_config(config_path)
    options = cfg_options or {}
    if is_family(cfg):
        options = {k: v for k, v in options.items()
                   if k.startswith(FAMILY_OPTION_KEYS)}
    cfg = merge_search_options(cfg, options)
    work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(config_path))[0])
    return cfg, work_dir


def make_work_dir(work_dir):
    """Create ``work_dir``; :class:`SearchError` (one line) when it is no
    path or cannot be created."""
    if not isinstance(work_dir, str) or not work_dir:
        raise SearchError(f'work_dir must be a path, got {work_dir!r}')
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as e:
        raise SearchError(
            f'work dir {work_dir} cannot be created ({e.strerror}); choose '
            'another --work-dir') from None


def resolve_train_base(cfg, config_path):
    """The config's ``train_base`` (relative to ``config_path``), checked
    to load and name a backbone; None when it has none."""
    train_base = cfg.get('train_base')
    if train_base:
        if not osp.isabs(train_base):
            train_base = osp.join(osp.dirname(osp.abspath(config_path)),
                                  train_base)
        train_base_backbone(train_base)  # fails now, not after the search
    return train_base


def run_search(cfg, config_path, work_dir, *, seed=None, resume=False,
               progress=True):
    """One search from the loaded config ``cfg`` (read from
    ``config_path``) into ``work_dir``; return the summary dict.

    ``seed`` replaces ``search.seed``; ``resume`` continues from the
    checkpoint in ``work_dir``. The work dir receives what
    :func:`~e3d_plugin.nas.write_results` writes (with ``e3d_searched.py``
    when the config sets ``train_base``) and ``search.log`` (appended to).
    """
    check_search_config(cfg, config_path)
    train_base = resolve_train_base(cfg, config_path)
    # every check before the work dir is touched
    searcher = build_search(cfg, seed=seed, work_dir=work_dir,
                            progress=progress).searcher
    make_work_dir(work_dir)
    # appended: a failing rerun keeps the log of the earlier run
    searcher.logger = MMLogger.get_instance(
        f'e3d_search_{time.time_ns()}',
        log_file=osp.join(work_dir, 'search.log'),
        log_level='INFO', file_mode='a')
    searcher.logger.info(
        f'searching with {config_path}: budgets {searcher.budgets}, '
        f'{searcher.num_candidates} candidates, seed {searcher.seed}'
        + (' (resumed)' if resume else ''))
    result = searcher.run(resume=resume)
    summary = write_results(result, work_dir, config=config_path,
                            train_base=train_base)
    searcher.logger.info(
        f"best {score_label(searcher.score)} {summary['best_score']:.6f} "
        f"({summary['best_flops'] / 1e9:.3f} GFLOPs, "
        f"{summary['best_params'] / 1e6:.3f} M params, "
        f"{summary['best_layers']} layers"
        + (f", {summary['best_latency']:.2f} ms predicted"
           if 'best_latency' in summary else '') + ') after '
        f"{summary['num_evaluated']} candidates in "
        f"{summary['elapsed_s']:.1f} s; results in {work_dir}")
    calls = getattr(searcher.score, 'calls', 0)
    if calls:  # a network score of the zoo keeps its cost
        searcher.logger.info(
            f'{score_label(searcher.score)}: {calls} structures computed by '
            f'this run, {searcher.score.total_ms / calls:.1f} ms each')
    return summary


__all__ = ['load_search_config', 'merge_search_options', 'load_search_job',
           'is_family', 'make_work_dir', 'resolve_train_base', 'run_search',
           'FAMILY_OPTION_KEYS']
