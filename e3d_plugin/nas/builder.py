"""Build the searcher of a loaded search config, as every caller needs it.

A search config (``configs/search_e3d_*.py``) sets ``init_structure``,
``score``, ``space`` and ``search`` (the searcher's arguments, with its
``budgets``). :func:`build_search` turns it into the searcher and returns,
with it, what the callers use besides: the space, the score, the starting
structure, the budgets and the clip of the cost. ``tools/search.py`` (through
:func:`~e3d_plugin.nas.job.run_search`), the rank study
(:func:`~e3d_plugin.study.build_searcher`) and ``bench/e3d_vs_x3d.py`` all
build through it, so they cost structures at the same clip: ``search.
image_size`` / ``search.frames`` when the config gives them, else the
space's.
"""
from typing import NamedTuple

from ..checks import short_repr
from ..registry import SEARCHERS, build
from .state import SearchError

#: The keys every search config sets.
REQUIRED_KEYS = ('init_structure', 'score', 'space', 'search')


class SearchBuild(NamedTuple):
    """The searcher of a search config and what it was built from.

    ``space``, ``score``, ``init_structure`` (a
    :class:`~e3d_plugin.structure.Structure`) and ``budgets`` are the
    searcher's own; ``image_size`` and ``frames`` are the clip its cost is
    computed at (``search.image_size`` / ``search.frames`` when given, else
    the space's).
    """

    searcher: object
    space: object
    score: object
    init_structure: object
    budgets: dict
    image_size: object
    frames: int


def to_plain(value):
    """A ConfigDict / nested config value as plain dicts and lists."""
    if hasattr(value, 'to_dict'):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def check_search_config(cfg, config_path):
    """Refuse (:class:`SearchError`, one line) a search config that lacks a
    required key or has one of the wrong type (``score``, ``space`` and
    ``search`` dicts, ``init_structure`` a preset name, file or block list,
    ``train_base`` a path)."""
    for key in REQUIRED_KEYS:
        if cfg.get(key) is None:
            raise SearchError(
                f"config {config_path} is missing the required key '{key}'")
    for key in ('score', 'space', 'search'):
        if not isinstance(cfg[key], dict):
            raise SearchError(
                f'{key} must be a dict (a config with a type), got '
                f'{cfg[key]!r}'[:200])
    init_structure = cfg['init_structure']
    if not isinstance(init_structure, (str, list, tuple)):
        raise SearchError(
            'init_structure must be a preset name, a structure file or a '
            f'list of block dicts, got {init_structure!r}'[:200])
    train_base = cfg.get('train_base')
    if train_base is not None and not isinstance(train_base, str):
        raise SearchError(
            f'train_base must be a config path, got {train_base!r}'[:200])


def build_search(cfg, *, seed=None, num_candidates=None, work_dir=None,
                 progress=True):
    """Build the searcher of the loaded search config ``cfg``.

    Args:
        cfg (Config | dict): A search config (``init_structure``, ``score``,
            ``space``, ``search``); ``search.type`` defaults to
            ``EntropyEvolution``.
        seed (int, optional): Replaces ``search.seed``.
        num_candidates (int, optional): Replaces ``search.num_candidates``.
        work_dir (str, optional): Where the searcher's checkpoints go (a
            ``work_dir`` in ``search`` wins, as it always has).
        progress (bool): Show the progress bar on stderr (a ``progress``
            in ``search`` wins).

    Returns:
        SearchBuild: the searcher, its space, score, starting structure,
        budgets and clip (``image_size``, ``frames``).

    A wrong value raises :class:`SearchError` (or the ``ValueError`` /
    ``TypeError`` of a constructor) with one line; nothing is written.
    """
    search = to_plain(cfg['search'])
    if not isinstance(search, dict):
        raise SearchError(
            f'search must be a dict (a config with a type), got '
            f'{short_repr(search)}')
    search = dict(search)
    search.setdefault('type', 'EntropyEvolution')
    if seed is not None:
        search['seed'] = seed
    if num_candidates is not None:
        search['num_candidates'] = int(num_candidates)
    searcher = build(
        SEARCHERS, search,
        score=to_plain(cfg['score']),
        space=to_plain(cfg['space']),
        init_structure=to_plain(cfg['init_structure']),
        work_dir=work_dir,
        progress=progress)
    return SearchBuild(
        searcher=searcher,
        space=searcher.space,
        score=searcher.score,
        init_structure=searcher.init_structure,
        budgets=dict(searcher.budgets),
        image_size=searcher.image_size,
        frames=searcher.frames)


__all__ = ['REQUIRED_KEYS', 'SearchBuild', 'build_search',
           'check_search_config', 'to_plain']
