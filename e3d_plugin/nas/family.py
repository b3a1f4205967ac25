"""A family of searches: one config naming several search configs.

A family config (``configs/search_e3d_family.py``) sets only ``family``
(name -> search config path, relative to the family config) and
``work_dir``. :func:`run_family` loads and checks every member first, then
searches each in turn, in one process (one start-up, one latency table per
device), into ``WORK_DIR/<name>``, and writes ``family_summary.json``
(name -> the member's summary) into ``WORK_DIR``.
"""
import json
import os.path as osp

from .builder import check_search_config
from .job import (FAMILY_OPTION_KEYS, load_search_config, make_work_dir,
                  run_search)
from .state import SearchError

#: The file collecting the members' summaries.
FAMILY_SUMMARY_NAME = 'family_summary.json'


def load_family(cfg, config_path, cfg_options=None):
    """``{name: (path, cfg)}`` of the members of the family config ``cfg``
    (read from ``config_path``), each loaded with the ``cfg_options`` that
    are not the family's own and checked; :class:`SearchError` (one line)
    for a bad member."""
    family = cfg.family
    if not isinstance(family, dict) or not family:
        raise SearchError(
            f'config {config_path}: family must be a non-empty dict of '
            'name -> search config path')
    folder = osp.dirname(osp.abspath(config_path))
    options = {k: v for k, v in (cfg_options or {}).items()
               if not k.startswith(FAMILY_OPTION_KEYS)}
    members = {}
    for name, path in family.items():
        if not isinstance(path, str):
            raise SearchError(
                f'config {config_path}: family member {name!r} must be a '
                f'config path, got {path!r}')
        path = path if osp.isabs(path) else osp.join(folder, path)
        if not osp.isfile(path):
            raise SearchError(
                f'config {config_path}: family member {name!r}: no config '
                f'at {path}')
        member = load_search_config(path, options or None)
        check_search_config(member, path)
        members[name] = (path, member)
    return members


def run_family(cfg, config_path, work_dir, *, cfg_options=None, seed=None,
               resume=False, progress=True, announce=None):
    """Search every member of the family config ``cfg`` (read from
    ``config_path``) into ``work_dir/<name>``; write
    ``work_dir/family_summary.json``; return ``{name: summary}``.

    Every member is loaded and checked before the first search. Each is
    searched as :func:`~e3d_plugin.nas.job.run_search` searches it, with
    ``cfg_options`` (those that are not the family's own), ``seed``,
    ``resume`` and ``progress``. ``announce(index, total, name, path)`` is
    called before each member's search (``index`` from 1).
    """
    members = load_family(cfg, config_path, cfg_options)
    summaries = {}
    for index, (name, (path, member)) in enumerate(members.items(), 1):
        if announce is not None:
            announce(index, len(members), name, path)
        summaries[name] = run_search(member, path, osp.join(work_dir, name),
                                     seed=seed, resume=resume,
                                     progress=progress)
    make_work_dir(work_dir)
    with open(osp.join(work_dir, FAMILY_SUMMARY_NAME), 'w') as f:
        json.dump(summaries, f, indent=2)
    return summaries


def format_family_table(summaries):
    """The members' summaries as a text table: best score, GFLOPs, M
    params, layers, predicted latency (ms, ``-`` without) and search
    seconds."""
    lines = [f"{'member':<10}{'best score':>12}{'GFLOPs':>9}{'params M':>10}"
             f"{'layers':>8}{'latency ms':>12}{'search s':>10}"]
    for name, summary in summaries.items():
        latency = summary.get('best_latency')
        lines.append(
            f"{name:<10}{summary['best_score']:>12.4f}"
            f"{summary['best_flops'] / 1e9:>9.3f}"
            f"{summary['best_params'] / 1e6:>10.3f}"
            f"{summary['best_layers']:>8}"
            f"{'-' if latency is None else f'{latency:.2f}':>12}"
            f"{summary['elapsed_s']:>10.1f}")
    return '\n'.join(lines)


__all__ = ['FAMILY_SUMMARY_NAME', 'load_family', 'run_family',
           'format_family_table']
