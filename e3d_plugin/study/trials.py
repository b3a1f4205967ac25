"""Search-outcome trials: does searching with a score give a better network
than searching with FLOPs?

    trials = SearchTrials('configs/search_e3d_xs_motion-hard.py',
                          'configs/e3d/e3d_xs_8x4x1_motion-hard.py',
                          'work_dirs/search_trials', seeds=4)
    trials.prepare()         # check the inputs, write (or reload) the plan
    trials.search()          # one search per score, those not finished yet
    trials.train()           # every searched structure and X3D, every seed
    report = trials.report()  # trials.json, trials.md

A rank correlation (the rank study) says how well a score orders
structures; a user of the search needs to know whether the structure it
picks trains better than the one a search with FLOPs picks. For every score
of :data:`SCORES` the trials run the search of one search config with the
same budgets, space, starting structure, search seed and candidate count
(``num_candidates``, the same for all: the zoo's network scores cost about
0.1-0.6 s per structure on a CPU core, STEntr-Score and the costs tens of
microseconds), take the best structure of each, train it with ``seeds``
seeds on the run queue (:mod:`e3d_plugin.study.queue`) and compare the
mean val top-1 of each score's structure with that of the FLOPs search.

The scores: ``stentr`` (STEntr-Score), ``stentr_norefine`` (``refine=
False``), ``stentr_coverage`` (``temporal_coverage=True``), ``flops``,
``params`` (the cost as the score, :class:`~e3d_plugin.nas.FlopsScore`,
:class:`~e3d_plugin.nas.ParamsScore`), ``zen``, ``naswot``, ``synflow``,
``gradnorm``, ``zico`` (the network scores of :mod:`e3d_plugin.nas.zoo`;
each seeded by the search seed) and ``random``: draws of
``space.sample(start, random.Random(search_seed))`` until one is within
every budget with FLOPs at least ``band`` times the FLOPs budget (the
near-budget band), at most ``num_candidates`` draws; the first such draw is
its structure. Each search is the config's ``search`` with ``score.type``
replaced (the config's score arguments are kept: the zoo's scores accept
and ignore STEntr's own), a checkpoint every ``num_candidates / 50``
candidates.

Two searches that find the same structure **share its runs**: the first of
them in score order trains it, the others report the same accuracies (a
note says so; the same structure with the same seed would train to the same
network again).

X3D at equal FLOPs trains alongside (``x3d_config``, e.g.
``configs/compare/x3d_8x4x1_motion-hard.py``): its runs train the training
config with the X3D config's ``model.backbone`` and head ``in_channels``,
so schedule and data are those of the E3D runs. Its FLOPs are conv
multiply-adds of one clip at the search's clip, counted by mmengine's
``FlopAnalyzer`` on the built backbone (:func:`backbone_cost`; for E3D
structures the cost model counts the same, see ``bench/e3d_vs_x3d.py``).

Report (:func:`make_trials_report`): per score, the searched structure's
FLOPs, params, layers, temporal receptive field and STEntr-Score, the
search's wall time (and the network score's ms per structure), the mean,
standard deviation (``ddof=1``) and n of the accuracy over the seeds (a
run's accuracy is the mean of its last ``final_epochs`` validations), and
against the FLOPs search the mean difference and the p-value of a
two-sided permutation test of the difference in means (independent samples,
:func:`permutation_pvalue`: exact when the number of distinct splits is at
most ``n_resamples``, seeded otherwise). p-values are not corrected for the
number of comparisons.

Work dir: ``trials_plan.json`` (the settings, with a sha256 of each
config's loaded content, the budgets, X3D's cost and each finished search:
structure, cost, STEntr-Score, temporal receptive field, search seconds),
``searches/<score>/`` (the search's checkpoint, ``best_structure.json``,
``top_k.json``, ``search_summary.json``, ``search_curve.png``),
``results.jsonl`` and ``runs/<score>_seed<s>/`` (the run queue's),
``trials.json`` and ``trials.md``. A kill during a search resumes that
search from its checkpoint (finished searches are not run again); a kill
during the runs loses the runs in flight only. A work dir holding a plan
is continued with ``resume`` only, and only with the same settings
(including the content of every config); ``report_only`` reports what is
there.
"""
import copy
import json
import math
import os
import os.path as osp
import random
import sys
import time

import numpy as np

from ..fileio import atomic_write
from ..nas.evolution import first_difference, object_settings
from ..nas.state import SearchError
from .queue import Run, RunQueue, duration
from .report import _json_ready, run_accuracy
from .results import finished_runs
from .runner import (MAX_CANDIDATES, MAX_SEEDS, _normal, check_metric,
                     check_train_config, check_work_dir, config_digest,
                     config_digests, write_run_config)
from .sampler import StudyError

PLAN_NAME = 'trials_plan.json'
PLAN_FORMAT = 'e3d-search-trials'
PLAN_VERSION = 1
REPORT_NAME = 'trials'
#: The scores a trial searches with: name -> the score config's ``type``
#: and the arguments that replace the search config's (None: random
#: sampling within the band).
SCORES = {
    'stentr': dict(type='STEntrScore', refine=True,
                   temporal_coverage=False),
    'stentr_norefine': dict(type='STEntrScore', refine=False,
                            temporal_coverage=False),
    'stentr_coverage': dict(type='STEntrScore', refine=True,
                            temporal_coverage=True),
    'flops': dict(type='FlopsScore'),
    'params': dict(type='ParamsScore'),
    'random': None,
    'zen': dict(type='ZenScore'),
    'naswot': dict(type='NASWOTScore'),
    'synflow': dict(type='SynFlowScore'),
    'gradnorm': dict(type='GradNormScore'),
    'zico': dict(type='ZiCoScore'),
}
#: The scores that build and run every network (seeded by the search seed).
NETWORK_SCORES = ('zen', 'naswot', 'synflow', 'gradnorm', 'zico')
#: The search every other score is compared with.
BASELINE = 'flops'
#: The key of X3D's runs.
X3D = 'x3d'
#: Report names.
LABELS = {
    'stentr': 'STEntr-Score',
    'stentr_norefine': 'STEntr (refine=False)',
    'stentr_coverage': 'STEntr (temporal cov.)',
    'flops': 'FLOPs',
    'params': 'params',
    'random': 'random (band)',
    'zen': 'Zen-Score',
    'naswot': 'NASWOT',
    'synflow': 'SynFlow',
    'gradnorm': 'grad-norm',
    'zico': 'ZiCo',
    X3D: 'X3D (equal FLOPs)',
}
#: Candidates of every search by default: what the network scores afford
#: (about 650 structures computed, 1-7 min a search on a CPU core).
DEFAULT_NUM_CANDIDATES = 1000
# MAX_CANDIDATES (a network score at 0.2-0.7 s a structure would take one
# to three days per search beyond it) and MAX_SEEDS are the rank study's.
#: Checkpoints a search writes (one every num_candidates / this).
CHECKPOINTS_PER_SEARCH = 50
#: Resamples of a permutation test (exact below this many splits).
N_RESAMPLES = 9999
#: Settings compared as the configs' content.
HASH_KEYS = {'search_config_sha256': 'search config',
             'train_config_sha256': 'training config',
             'x3d_config_sha256': 'X3D config'}


def check_scores(scores):
    """``scores`` (None: all of :data:`SCORES`) as a tuple of known names
    without repeats; :class:`StudyError` naming the first unknown one."""
    if scores is None:
        return tuple(SCORES)
    if isinstance(scores, str) or not isinstance(scores, (list, tuple)):
        raise StudyError(f'--scores must be a list of score names, got '
                         f'{scores!r}')
    if not scores:
        raise StudyError('--scores needs at least one score name')
    for name in scores:
        if name not in SCORES:
            raise StudyError(f'--scores: unknown score {name!r}; known: '
                             f'{", ".join(SCORES)}')
    return tuple(dict.fromkeys(scores))


def score_config(name, base, search_seed=0):
    """The score config of score ``name``: the search config's score
    arguments ``base`` with its type (and, for the STEntr variants,
    ``refine`` / ``temporal_coverage``) replaced; a network score is seeded
    by the search seed (modulo 2**31) unless the config seeds it."""
    score = {k: v for k, v in dict(base).items() if k != 'type'}
    score.update(SCORES[name] or SCORES[BASELINE])
    if name in NETWORK_SCORES:
        score.setdefault('seed', int(search_seed) % 2**31)
    return score


def permutation_pvalue(a, b, n_resamples=N_RESAMPLES, seed=0):
    """Two-sided permutation test of ``mean(a) - mean(b)`` for independent
    samples (``scipy.stats.permutation_test``, ``permutation_type=
    'independent'``).

    Exact (every split of the pooled values into groups of ``len(a)`` and
    ``len(b)``) when there are at most ``n_resamples`` such splits, else
    ``n_resamples`` random ones drawn with ``seed``. Returns a dict:
    ``diff`` (the difference of the means), ``p``, ``exact`` and ``splits``
    (the splits the null distribution is made of); ``p`` is None, with a
    ``note``, when a group has fewer than 2 values.
    """
    from scipy.stats import permutation_test

    from .stats import _generator
    a = np.asarray([v for v in a if v is not None], dtype=float)
    b = np.asarray([v for v in b if v is not None], dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else None
    if len(a) < 2 or len(b) < 2:
        return dict(diff=diff, p=None, exact=None, splits=0,
                    note=f'{len(a)} and {len(b)} values; a permutation test '
                    'needs at least 2 in each group')

    def statistic(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    splits = math.comb(len(a) + len(b), len(a))
    exact = splits <= n_resamples
    result = permutation_test((a, b), statistic,
                              permutation_type='independent',
                              alternative='two-sided', vectorized=True,
                              n_resamples=n_resamples,
                              **_generator(permutation_test, seed))
    return dict(diff=diff, p=float(result.pvalue), exact=exact,
                splits=splits if exact else n_resamples, note=None)


# ----------------------------------------------------------------------
def count_backbone(backbone, frames, image_size):
    """``(flops, params)`` of a built backbone: conv multiply-adds of one
    ``1 x 3 x frames x H x W`` clip counted by mmengine's ``FlopAnalyzer``
    (on a contiguous float32 copy, in eval mode) and its learnable
    parameters."""
    import torch
    from mmengine.analysis import FlopAnalyzer
    height, width = (image_size if isinstance(image_size, (list, tuple))
                     else (image_size, image_size))
    model = copy.deepcopy(backbone).float().cpu().to(
        memory_format=torch.contiguous_format)
    model.eval()  # not chained: X3D's train() returns None
    with torch.no_grad():
        analyzer = FlopAnalyzer(model,
                                torch.randn(1, 3, frames, height, width))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_op = analyzer.by_operator()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return int(by_op.get('conv', 0)), int(params)


def backbone_cost(backbone_cfg, frames, image_size):
    """``dict(flops, params)`` of the backbone a config's
    ``model.backbone`` builds (E3D or mmaction2's, e.g. X3D), at one clip of
    ``frames x image_size`` (see :func:`count_backbone`)."""
    import e3d_plugin.models  # noqa: F401  (first: mmaction2 needs its fixes)
    import mmaction.models  # noqa: F401  (registers X3D and the heads)
    from mmaction.registry import MODELS
    backbone = MODELS.build(copy.deepcopy(dict(backbone_cfg)))
    flops, params = count_backbone(backbone, frames, image_size)
    return dict(flops=flops, params=params)


def write_x3d_config(path, train_config, backbone, in_channels, seed):
    """An mmaction2 config: ``train_config`` with its backbone replaced by
    ``backbone`` (a config dict, e.g. X3D's), the head's ``in_channels``
    set and ``randomness.seed`` set to ``seed``."""
    backbone = dict(_delete_=True, **backbone)
    text = (
        '# Generated by the search trials: the training config below with '
        'the X3D\n# backbone at equal FLOPs and one seed.\n'
        f'_base_ = [{osp.abspath(train_config)!r}]\n\n'
        f'model = dict(\n    backbone={backbone!r},\n'
        f'    cls_head=dict(in_channels={int(in_channels)}))\n'
        f'randomness = dict(seed={int(seed)})\n')
    with open(path, 'w') as f:
        f.write(text)
    return path


def draw_in_band(space, template, budgets, image_size, frames, band, seed,
                 max_draws):
    """The first of at most ``max_draws`` draws ``space.sample(template,
    rng)`` (``rng = random.Random(seed)``) within every budget with FLOPs
    at least ``band`` times the FLOPs budget: a dict of ``structure``,
    ``cost`` and ``draw`` (its 1-based index); :class:`StudyError` when
    none is. Every budget of the search is checked (the memory ones
    included: :func:`~e3d_plugin.cost.cost_totals`)."""
    from ..cost import COST_FIELDS, cost_totals
    floor = band * budgets['flops']
    rng = random.Random(seed)
    for draw in range(1, max_draws + 1):
        structure = space.sample(template, rng)
        cost = dict(zip(COST_FIELDS, cost_totals(structure, image_size,
                                                 frames)))
        if cost['flops'] >= floor and all(cost[key] <= limit
                                          for key, limit in budgets.items()):
            return dict(structure=structure, cost=cost, draw=draw)
    raise StudyError(
        f'random: none of {max_draws} draws is within the budgets with FLOPs '
        f'>= {floor:.4g} ({band:g} x the FLOPs budget); lower --band or '
        'raise --num-candidates')


def _check_int(flag, value, low, high):
    if not isinstance(value, int) or isinstance(value, bool) or not (
            low <= value <= high):
        raise StudyError(f'{flag} must be an integer in {low}..{high}, got '
                         f'{value!r}')


class SearchTrials:
    """Search with every score, train each searched structure, compare
    with the FLOPs search (see the module docstring).

    Args:
        search_config (str): Search config (space, start, budgets, clip,
            the searcher's arguments), e.g.
            ``configs/search_e3d_xs_motion-hard.py``.
        train_config (str): An mmaction2 config with an ``E3D`` backbone;
            every searched structure trains with it.
        work_dir (str): Where the plan, the searches, the runs and the
            report go.
        scores (Sequence[str], optional): Names of :data:`SCORES` (default:
            all), in report order.
        num_candidates (int): Candidates of every search (and the most
            draws of ``random``), 1 .. :data:`MAX_CANDIDATES`.
        search_seed (int): Seed of every search, of ``random``'s draws, of
            the network scores and of randomised permutation tests.
        band (float): ``random`` draws structures with FLOPs at least
            ``band`` times the FLOPs budget, in (0, 1].
        seeds (int): Training seeds per structure (at least 2).
        first_seed (int): Training seeds are ``first_seed`` ..
            ``first_seed + seeds - 1``.
        x3d_config (str, optional): A config whose ``model.backbone`` (X3D
            at equal FLOPs) trains alongside with the same seeds; None: no
            X3D.
        cfg_options (dict, optional): Overrides of the search config.
        train_cfg_options (dict, optional): Overrides of the training
            config, passed to every run (X3D's included).
        queue (dict, optional): Arguments of
            :class:`~e3d_plugin.study.queue.RunQueue` (where and how many
            runs go at once).
        resume (bool): Continue the trials of ``work_dir``.
        metric (str): The validation metric read from each run.
        final_epochs (int): A run's accuracy is the mean of its last
            ``final_epochs`` validations (a report setting).
        n_resamples (int): Resamples of a randomised permutation test.
        train_command (list[str], optional): The command that trains one
            config (see :class:`~e3d_plugin.study.queue.RunQueue`).
        keep_checkpoints (bool): Keep each run's ``*.pth`` files.
        progress (bool): Show each search's progress on stderr.
        stream: Where progress lines go (stderr).
    """

    def __init__(self, search_config, train_config, work_dir, scores=None,
                 num_candidates=DEFAULT_NUM_CANDIDATES, search_seed=0,
                 band=0.8, seeds=4, first_seed=0, x3d_config=None,
                 cfg_options=None, train_cfg_options=None, queue=None,
                 resume=False, metric='acc/top1', final_epochs=1,
                 n_resamples=N_RESAMPLES, train_command=None,
                 keep_checkpoints=False, progress=False, stream=None):
        self.scores = check_scores(scores)
        _check_int('--num-candidates', num_candidates, 1, MAX_CANDIDATES)
        _check_int('--search-seed', search_seed, 0, 2**31 - 1)
        if not isinstance(band, (int, float)) or isinstance(band, bool) or (
                not 0 < band <= 1):
            raise StudyError(f'--band must be a number in (0, 1], got '
                             f'{band!r}')
        if not isinstance(seeds, int) or isinstance(seeds, bool) or not (
                2 <= seeds <= MAX_SEEDS):
            raise StudyError(
                f'--seeds must be an integer in 2..{MAX_SEEDS} (a mean and '
                f'its spread need two runs at least), got {seeds!r}')
        _check_int('--first-seed', first_seed, 0, 2**31 - 1 - seeds)
        _check_int('--final-epochs', final_epochs, 1, 10000)
        _check_int('n_resamples', n_resamples, 1, 10**7)
        for flag, path in (('search config', search_config),
                           ('--train-config', train_config),
                           ('--x3d-config', x3d_config)):
            if not (isinstance(path, str) and path) and not (
                    flag == '--x3d-config' and path is None):
                raise StudyError(f'{flag} must be a file path, got {path!r}')
        self.search_config = search_config
        self.train_config = train_config
        self.x3d_config = x3d_config
        self.work_dir = work_dir
        self.num_candidates = num_candidates
        self.search_seed = search_seed
        self.band = float(band)
        self.seeds = seeds
        self.first_seed = first_seed
        self.cfg_options = dict(cfg_options or {})
        self.train_cfg_options = dict(train_cfg_options or {})
        self.resume = resume
        self.metric = metric
        self.final_epochs = final_epochs
        self.n_resamples = n_resamples
        self.progress = progress
        self.stream = stream or sys.stderr
        self.queue = RunQueue(work_dir, key_fields=('score', 'seed'),
                              metric=metric,
                              keep_checkpoints=keep_checkpoints,
                              train_command=train_command,
                              stream=self.stream, **dict(queue or {}))
        self.plan = None
        self.notes = []
        self._search_cfg = None
        self._x3d = None

    # ------------------------------------------------------------------
    @property
    def plan_path(self):
        """The trials' plan file."""
        return osp.join(self.work_dir, PLAN_NAME)

    def search_dir(self, name):
        """Where the search of score ``name`` goes."""
        return osp.join(self.work_dir, 'searches', name)

    def run_dir(self, name, seed):
        """The work dir of one run."""
        return osp.join(self.work_dir, 'runs', f'{name}_seed{seed}')

    def log(self, text):
        """One progress line on the stream."""
        self.stream.write(text + '\n')
        self.stream.flush()

    def settings(self, digests):
        """What makes two trials the same trials (JSON-ready); ``digests``
        maps the keys of :data:`HASH_KEYS` to the configs' sha256."""
        return _normal(dict(
            search_config=osp.abspath(self.search_config),
            cfg_options=self.cfg_options,
            search_config_sha256=digests.get('search_config_sha256'),
            train_config=osp.abspath(self.train_config),
            train_cfg_options=self.train_cfg_options,
            train_config_sha256=digests.get('train_config_sha256'),
            x3d_config=(osp.abspath(self.x3d_config) if self.x3d_config
                        else None),
            x3d_config_sha256=digests.get('x3d_config_sha256'),
            scores=list(self.scores),
            num_candidates=self.num_candidates,
            search_seed=self.search_seed,
            band=self.band,
            seeds=self.seeds,
            first_seed=self.first_seed,
            metric=self.metric))

    # ------------------------------------------------------------------
    def load_search_config(self):
        """The search config with ``cfg_options`` merged in (keys it has
        only), checked for its required keys; :class:`StudyError`."""
        from ..nas.builder import check_search_config
        from ..nas.job import load_search_config
        if self._search_cfg is None:
            try:
                cfg = load_search_config(self.search_config,
                                         self.cfg_options or None)
                check_search_config(cfg, self.search_config)
            except SearchError as e:
                raise StudyError(str(e)) from None
            budgets = dict((cfg.search.to_dict() if hasattr(
                cfg.search, 'to_dict') else cfg.search).get('budgets') or {})
            if 'latency' in budgets:
                raise StudyError(
                    'search.budgets.latency: the trials compare scores '
                    'under flops / params / layers / max_feature / '
                    'activation_bytes budgets only')
            if 'random' in self.scores and 'flops' not in budgets:
                raise StudyError(
                    '--scores random draws within the near-budget band and '
                    'needs search.budgets.flops; give the search a FLOPs '
                    'budget or leave random out')
            self._search_cfg = cfg
        return self._search_cfg

    def build(self, name, work_dir=None):
        """The :class:`~e3d_plugin.nas.SearchBuild` of the search of score
        ``name`` (``random``: that of the FLOPs search, for its space,
        start, budgets and clip), into ``work_dir``."""
        from ..nas import build_search
        from ..nas.builder import to_plain
        cfg = self.load_search_config()
        search = dict(to_plain(cfg['search']))
        for key in ('work_dir', 'progress', 'logger'):
            search.pop(key, None)
        search['checkpoint_interval'] = max(
            1, self.num_candidates // CHECKPOINTS_PER_SEARCH)
        plain = dict(init_structure=to_plain(cfg['init_structure']),
                     score=score_config(name, to_plain(cfg['score']),
                                        self.search_seed),
                     space=to_plain(cfg['space']), search=search)
        try:
            return build_search(plain, seed=self.search_seed,
                                num_candidates=self.num_candidates,
                                work_dir=work_dir, progress=self.progress)
        except (ValueError, TypeError, KeyError) as e:
            # SearchError, StructureError, a score argument of the wrong
            # type: all come from the search config
            raise StudyError(f'{self.search_config} with score {name}: '
                             f'{e}') from None

    def load_x3d_config(self):
        """``dict(cfg, backbone, in_channels)`` of the X3D config;
        :class:`StudyError` (one line) when it cannot serve."""
        import ast

        from e3d_plugin.launch import LaunchError, load_config
        try:
            cfg = load_config(self.x3d_config)
        except LaunchError as e:
            raise StudyError(f'--x3d-config: {e}') from None
        model = cfg.get('model') or {}
        backbone = model.get('backbone')
        head = model.get('cls_head') or {}
        if not isinstance(backbone, dict) or not isinstance(
                backbone.get('type'), str):
            raise StudyError(f'--x3d-config {self.x3d_config}: '
                             'model.backbone with a type is missing')
        in_channels = head.get('in_channels')
        if not isinstance(in_channels, int) or isinstance(
                in_channels, bool) or in_channels < 1:
            raise StudyError(
                f'--x3d-config {self.x3d_config}: model.cls_head.in_channels'
                f' must be a positive integer, got {in_channels!r}')
        backbone = backbone.to_dict() if hasattr(backbone, 'to_dict') else (
            dict(backbone))
        backbone.pop('_delete_', None)
        try:
            if ast.literal_eval(repr(backbone)) != backbone:
                raise ValueError
        except (ValueError, SyntaxError):
            raise StudyError(
                f'--x3d-config {self.x3d_config}: model.backbone holds '
                'values that cannot be written into a run config') from None
        return dict(cfg=cfg, backbone=backbone, in_channels=in_channels)

    def _checked_train_config(self):
        """The training config, checked for a study and for ``metric``."""
        cfg = check_train_config(self.train_config, self.train_cfg_options)
        check_metric(self.metric, cfg, self.train_config)
        return cfg

    def _digests(self, tolerant=False):
        """The sha256 of each config's loaded content (and the configs);
        ``tolerant``: None for a config that does not load (a report)."""
        from e3d_plugin.launch import load_config
        steps = [('search_config_sha256', self.load_search_config),
                 ('train_config_sha256', self._checked_train_config)]
        if self.x3d_config:
            steps.append(('x3d_config_sha256',
                          lambda: self.load_x3d_config()['cfg']))
        if tolerant:
            steps[1] = ('train_config_sha256', lambda: load_config(
                self.train_config, self.train_cfg_options or None))
        return config_digests(steps, tolerant)

    def prepare(self, report_only=False):
        """Check the inputs and write the plan (or reload it, refusing
        other settings); return the plan. Nothing is written before every
        input is checked."""
        check_work_dir(self.work_dir, PLAN_NAME)
        digests = self._digests(tolerant=report_only)
        settings = self.settings(digests)
        if osp.isfile(self.plan_path):
            plan = self._load_plan()
            saved = plan['settings']
            if report_only:  # a report reads what is there
                saved = {k: v for k, v in saved.items()
                         if k not in HASH_KEYS}
                now = {k: v for k, v in settings.items()
                       if k not in HASH_KEYS}
            else:
                now = settings
            found = first_difference(saved, now)
            if found is not None:
                raise StudyError(self._difference(*found))
            if not (self.resume or report_only):
                raise StudyError(
                    f'work dir {self.work_dir} already holds these search '
                    'trials; pass --resume to continue them, --report-only '
                    'to report them, or choose another --work-dir')
            for key, what in HASH_KEYS.items():
                if plan['settings'].get(key) != settings.get(key):
                    self.notes.append(
                        f'the {what} does not load as it did for the plan '
                        '(edited or missing since); the report shows the '
                        'results of the plan')
            self.plan = plan
            return plan
        if self.resume or report_only:
            flag = '--resume' if self.resume else '--report-only'
            raise StudyError(
                f'{flag}: no search trials in {self.work_dir} (no '
                f'{PLAN_NAME}); run without it to start them')
        built = {name: self.build(name) for name in self.scores}
        setup = built[self.scores[0]]
        if 'random' in built:  # milliseconds: refuse a band none reaches
            draw_in_band(setup.space, setup.init_structure, setup.budgets,
                         setup.image_size, setup.frames, self.band,
                         self.search_seed, self.num_candidates)
        x3d = None
        if self.x3d_config:
            x3d = self._x3d_entry(setup)
        budgets = dict(setup.budgets)
        image_size = setup.image_size
        if not isinstance(image_size, (list, tuple)):
            image_size = (image_size, image_size)
        notes = self._clip_notes(setup.frames, list(image_size))
        self.plan = _normal(dict(
            format=PLAN_FORMAT, version=PLAN_VERSION,
            settings=settings,
            budgets=budgets,
            image_size=list(image_size),
            frames=setup.frames,
            band_flops=(self.band * budgets['flops'] if 'flops' in budgets
                        else None),
            x3d=x3d,
            notes=notes,
            searches={}))
        os.makedirs(self.work_dir, exist_ok=True)
        self._save_plan()
        return self.plan

    def _clip_notes(self, frames, image_size):
        """A note when the training config's clip is not the search's (the
        searched costs are then not those of the trained networks)."""
        from e3d_plugin.launch import LaunchError, config_clip, load_config
        try:
            cfg = load_config(self.train_config,
                              self.train_cfg_options or None)
            clip_frames, clip_size, _ = config_clip(cfg)
        except LaunchError:  # checked before: cannot happen, says nothing
            return []
        if (clip_frames, list(clip_size)) == (frames, image_size):
            return []
        return [f'the training clip ({clip_frames}x{clip_size[0]}x'
                f'{clip_size[1]}) is not the search clip ({frames}x'
                f'{image_size[0]}x{image_size[1]}): FLOPs and scores are '
                'those of the search clip']

    def _difference(self, key, saved, now):
        if key in HASH_KEYS:
            what = HASH_KEYS[key]
            return (f'work dir {self.work_dir} holds search trials made with '
                    f'another content of the {what} (sha256 '
                    f'{str(saved)[:12]}, now {str(now)[:12]}: edited since); '
                    'restore it or choose another --work-dir')
        return (f'work dir {self.work_dir} holds search trials with {key} '
                f'{saved!r}, not {now!r}; choose another --work-dir (or '
                'repeat its settings)')

    def _x3d_entry(self, setup):
        loaded = self.load_x3d_config()
        try:
            cost = backbone_cost(loaded['backbone'], setup.frames,
                                 setup.image_size)
        except Exception as e:  # a builder raises many kinds; one line
            from e3d_plugin.launch import error_line
            raise StudyError(
                f'--x3d-config {self.x3d_config}: cannot build and count '
                f'model.backbone: {type(e).__name__}: {error_line(e)}'
            ) from None
        return dict(backbone=loaded['backbone'],
                    in_channels=loaded['in_channels'], **cost)

    def _save_plan(self):
        atomic_write(self.plan_path,
                     lambda f: json.dump(self.plan, f, indent=1), sync=True)

    def _load_plan(self):
        try:
            with open(self.plan_path) as f:
                plan = json.load(f)
            if plan.get('format') != PLAN_FORMAT or plan.get(
                    'version') != PLAN_VERSION:
                raise ValueError('not a search trials plan of this version')
            _ = plan['settings'], plan['searches']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StudyError(
                f'{self.plan_path} is not a usable search trials plan ({e});'
                ' choose another --work-dir') from None
        return plan

    # ------------------------------------------------------------------
    def search(self):
        """Run the search of every score whose result the plan lacks (a
        search with a checkpoint resumes from it); each result goes into
        the plan as soon as its search ends. Returns the names searched
        now."""
        if self.plan is None:
            self.prepare()
        searched = []
        for name in self.scores:
            if name in self.plan['searches']:
                continue
            entry = (self._draw_random() if name == 'random' else
                     self._search(name))
            self.plan['searches'][name] = _normal(entry)
            self._save_plan()
            cost = entry['cost']
            extra = (f", {entry['score_ms'] / entry['score_calls']:.0f} ms "
                     f"a structure ({entry['score_calls']} scored)"
                     if entry.get('score_calls') else '')
            self.log(f"search {name}: {cost['flops']:.4g} FLOPs, "
                     f"{cost['params']} params, {cost['layers']} layers, "
                     f"temporal field {entry['temporal_rf']}, in "
                     f"{duration(entry['search_s'])}{extra}")
            searched.append(name)
        return searched

    def _stentr(self):
        """STEntr-Score at the search's clip (the config's arguments)."""
        from ..registry import SCORES as SCORE_TYPES
        from ..registry import build
        from ..nas.builder import to_plain
        base = to_plain(self.load_search_config()['score'])
        return build(SCORE_TYPES, dict(type='STEntrScore', **{
            k: v for k, v in score_config('stentr', base).items()
            if k != 'type'}))

    def _entry(self, structure, cost):
        from ..cost import COST_FIELDS
        from ..units import temporal_receptive_field
        return dict(structure=structure.to_dicts(),
                    cost={key: int(cost[key]) for key in COST_FIELDS
                          if key in cost},
                    stentr_score=float(self._stentr()(structure)),
                    temporal_rf=int(temporal_receptive_field(structure)))

    def _search(self, name):
        from ..nas import write_results
        work_dir = self.search_dir(name)
        built = self.build(name, work_dir=work_dir)
        searcher = built.searcher
        resume = osp.isfile(searcher.checkpoint_path())
        self.log(f"search {name}: {'resuming' if resume else 'starting'} "
                 f'({self.num_candidates} candidates, seed '
                 f'{self.search_seed})')
        os.makedirs(work_dir, exist_ok=True)
        try:
            result = searcher.run(resume=resume)
        except SearchError as e:
            raise StudyError(f'search {name}: {e}') from None
        write_results(result, work_dir, config=osp.abspath(
            self.search_config))
        entry = self._entry(result['best_structure'], result['best_cost'])
        entry.update(score=object_settings(built.score),
                     best_score=float(result['best_score']),
                     num_evaluated=int(result['num_evaluated']),
                     search_s=float(result['elapsed_s']),
                     resumed=resume)
        if hasattr(built.score, 'calls'):  # a network score: its cost
            entry.update(score_calls=int(built.score.calls),
                         score_ms=float(built.score.total_ms))
        return entry

    def _draw_random(self):
        from ..structure import save_structure
        built = self.build('random')
        started = time.monotonic()
        found = draw_in_band(built.space, built.init_structure,
                             built.budgets, built.image_size, built.frames,
                             self.band, self.search_seed,
                             self.num_candidates)
        elapsed = time.monotonic() - started
        work_dir = self.search_dir('random')
        os.makedirs(work_dir, exist_ok=True)
        save_structure(found['structure'],
                       osp.join(work_dir, 'best_structure.json'))
        entry = self._entry(found['structure'], found['cost'])
        entry.update(score=dict(type='random', band=self.band,
                                seed=self.search_seed,
                                max_draws=self.num_candidates),
                     draw=found['draw'], search_s=elapsed, resumed=False)
        return entry

    # ------------------------------------------------------------------
    def queue_runs(self):
        """The :class:`~e3d_plugin.study.queue.Run` of every (score, seed)
        that trains (one structure shared by several scores trains once),
        seed by seed, X3D last in each seed."""
        from ..structure import Structure
        searches = self.plan['searches']
        runs = []
        for seed in range(self.first_seed, self.first_seed + self.seeds):
            for name in self.scores:
                if run_owner(self.plan, name) != name:
                    continue
                structure = Structure.from_dicts(
                    searches[name]['structure'])

                def write(run_dir, structure=structure, seed=seed):
                    return write_run_config(
                        osp.join(run_dir, 'config.py'), self.train_config,
                        structure, seed, origin='the search trials')

                runs.append(Run(dict(score=name, seed=seed),
                                self.run_dir(name, seed), write,
                                cfg_options=self.train_cfg_options,
                                label=f'{name} seed {seed}'))
            if self.plan.get('x3d'):
                x3d = self.plan['x3d']

                def write_x3d(run_dir, seed=seed):
                    return write_x3d_config(
                        osp.join(run_dir, 'config.py'), self.train_config,
                        x3d['backbone'], x3d['in_channels'], seed)

                runs.append(Run(dict(score=X3D, seed=seed),
                                self.run_dir(X3D, seed), write_x3d,
                                cfg_options=self.train_cfg_options,
                                label=f'{X3D} seed {seed}'))
        return runs

    def train(self):
        """Search what is not searched yet, then train every run not
        finished yet (see :meth:`~e3d_plugin.study.queue.RunQueue.run`);
        return the records of the runs trained now."""
        if self.plan is None:
            self.prepare()
        self.search()
        searches = self.plan['searches']

        def describe(run):
            name = run.key['score']
            flops = (self.plan['x3d']['flops'] if name == X3D else
                     searches[name]['cost']['flops'])
            return f'{flops:.4g} FLOPs'

        return self.queue.run(self.queue_runs(), describe)

    def failed(self):
        """Runs without a finished result: ``[(score, seed, reason)]``."""
        if self.plan is None or not all(name in self.plan['searches']
                                        for name in self.scores):
            return []
        return [(run.key['score'], run.key['seed'], reason)
                for run, reason in self.queue.failed(self.queue_runs())]

    # ------------------------------------------------------------------
    def report(self, write=True):
        """The report of what is there (see :func:`make_trials_report`);
        with ``write`` also ``trials.json`` and ``trials.md``."""
        if self.plan is None:
            self.prepare(report_only=True)
        report = make_trials_report(
            self.plan, self.queue.load_results(),
            final_epochs=self.final_epochs, n_resamples=self.n_resamples,
            notes=self.notes + self.queue.notes)
        if write:
            write_trials_report(report, self.work_dir)
        return report


# ----------------------------------------------------------------------
def run_owner(plan, name):
    """The score whose runs score ``name``'s structure trains in: the first
    score of the plan (in its order) whose search found the same structure
    (``name`` itself when none before it did; X3D its own)."""
    searches = plan['searches']
    if name == X3D or name not in searches:
        return name
    for other in plan['settings']['scores']:
        if other == name:
            return name
        if other in searches and searches[other]['structure'] == \
                searches[name]['structure']:
            return other
    return name


def make_trials_report(plan, records, final_epochs=1,
                       n_resamples=N_RESAMPLES, notes=()):
    """The report dict of a plan and the queue's records.

    Returns:
        dict: ``rows`` (one per score of the plan, then X3D: ``name``,
        ``label``, ``searched``, the search's ``cost``, ``stentr_score``,
        ``temporal_rf``, ``search_s``, ``score_ms`` (per structure, network
        scores), ``runs_of`` (the score whose runs it shares), ``acc``
        (seed -> accuracy), ``n``, ``mean``, ``std`` (``ddof=1``) and
        ``versus`` (against the FLOPs search: the :func:`permutation_pvalue`
        dict, or None)), ``settings``, ``budgets``, ``band_flops``,
        ``accuracy`` (what a run's accuracy is), ``runs_done``,
        ``num_runs``, ``notes``.
    """
    settings = plan['settings']
    first, count = settings['first_seed'], settings['seeds']
    seeds = list(range(first, first + count))
    done = finished_runs(records, ('score', 'seed'))
    searches = plan['searches']
    names = list(settings['scores']) + ([X3D] if plan.get('x3d') else [])
    notes = list(plan.get('notes', [])) + list(notes)
    rows = []
    for name in names:
        owner = run_owner(plan, name)
        acc = {}
        for seed in seeds:
            record = done.get((owner, seed))
            if record is not None:
                acc[str(seed)] = run_accuracy(record, final_epochs)
        values = list(acc.values())
        row = dict(name=name, label=LABELS.get(name, name),
                   searched=name == X3D or name in searches,
                   runs_of=owner if owner != name else None, acc=acc,
                   n=len(values),
                   mean=float(np.mean(values)) if values else None,
                   std=float(np.std(values, ddof=1)) if len(values) > 1
                   else None)
        if name == X3D:
            x3d = plan['x3d']
            row.update(cost=dict(flops=x3d['flops'], params=x3d['params'],
                                 layers=None),
                       stentr_score=None, temporal_rf=None, search_s=None,
                       score_ms=None)
        elif name in searches:
            entry = searches[name]
            calls = entry.get('score_calls')
            row.update(cost=entry['cost'],
                       stentr_score=entry['stentr_score'],
                       temporal_rf=entry['temporal_rf'],
                       search_s=entry['search_s'],
                       score_ms=(entry['score_ms'] / calls if calls
                                 else None))
        else:
            row.update(cost=None, stentr_score=None, temporal_rf=None,
                       search_s=None, score_ms=None)
        rows.append(row)
    by_name = {row['name']: row for row in rows}
    baseline = by_name.get(BASELINE)
    for row in rows:
        row['versus'] = None
        if baseline is None or row is baseline:
            continue
        if row['n'] and baseline['n']:
            row['versus'] = permutation_pvalue(
                list(row['acc'].values()), list(baseline['acc'].values()),
                n_resamples=n_resamples, seed=settings['search_seed'])
    if baseline is None:
        notes.append('no FLOPs search among the scores: no comparison')
    for row in rows:
        if row['runs_of']:
            notes.append(f"{row['label']} found the structure of "
                         f"{by_name[row['runs_of']]['label']}: it shares its "
                         'runs')
        if row['name'] != X3D and not row['searched']:
            notes.append(f"{row['label']}: search not finished")
    trained = {run_owner(plan, name) for name in names}
    num_runs = len(trained) * len(seeds)
    runs_done = sum(1 for key in done if key[0] in trained and key[1] in
                    seeds)
    return dict(
        settings=settings,
        budgets=plan['budgets'],
        image_size=plan['image_size'],
        frames=plan['frames'],
        band_flops=plan.get('band_flops'),
        accuracy=('final validation ' if final_epochs <= 1 else
                  f'mean of the last {final_epochs} validations: ')
        + settings['metric'],
        final_epochs=final_epochs,
        seeds=seeds,
        runs_done=runs_done,
        num_runs=num_runs,
        rows=rows,
        notes=notes)


def _num(value, scale=1.0, digits=2):
    return '-' if value is None else f'{value / scale:.{digits}f}'


def _cells(row):
    """The table cells of one report row (strings)."""
    cost = row['cost'] or {}
    if row['n']:
        accuracy = f"{100 * row['mean']:.1f}"
        accuracy += (f" ± {100 * row['std']:.1f}" if row['std'] is not None
                     else '')
    else:
        accuracy = '-'
    versus = row['versus'] or {}
    diff = versus.get('diff')
    p = versus.get('p')
    search = _num(row['search_s'], digits=1)
    if row['score_ms'] is not None:
        search += f" ({row['score_ms']:.0f} ms)"
    return [row['label'],
            _num(cost.get('flops'), 1e6),
            _num(cost.get('params'), 1e6, 3),
            '-' if cost.get('layers') is None else str(cost['layers']),
            '-' if row['temporal_rf'] is None else str(row['temporal_rf']),
            _num(row['stentr_score']),
            search,
            accuracy,
            str(row['n']),
            '-' if diff is None else f'{100 * diff:+.1f}',
            '-' if p is None else f'{p:.3f}']


HEADERS = ['score', 'FLOPs (M)', 'params (M)', 'layers', 'temporal RF',
           'STEntr', 'search (s)', 'val top-1 (%)', 'n', 'vs FLOPs (pt)',
           'p']


def _caption(report):
    settings = report['settings']
    seeds = report['seeds']
    band = report['band_flops']
    return (f"search-outcome trials: {report['accuracy']}, mean ± std "
            f'over seeds {seeds[0]}..{seeds[-1]}; {report["runs_done"]}/'
            f"{report['num_runs']} runs; budgets {report['budgets']}"
            + (f', band FLOPs >= {band:.4g}' if band else '') +
            f"; {settings['num_candidates']} candidates a search, search "
            f"seed {settings['search_seed']}")


def _footnotes(report):
    return ['vs FLOPs: difference of the mean accuracy from the FLOPs '
            "search's (points); p: two-sided permutation test of that "
            'difference (independent samples; exact where the splits are '
            'few), not corrected for the number of comparisons; search '
            "(s): wall time of the search (in brackets: the network score's "
            'mean ms per structure); temporal RF: frames one output '
            'position sees; X3D: FlopAnalyzer conv FLOPs at the search '
            'clip']


def format_trials_table(report):
    """The report's table as text (stdout)."""
    rows = [HEADERS] + [_cells(row) for row in report['rows']]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = [_caption(report)]
    for index, cells in enumerate(rows):
        lines.append('  '.join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))))
        if index == 0:
            lines.append('-' * len(lines[-1]))
    lines.extend(f'note: {note}' for note in report['notes'])
    lines.extend(_footnotes(report))
    return '\n'.join(lines)


def format_trials_markdown(report):
    """The report as Markdown: caption, table, notes."""
    lines = ['# Search-outcome trials', '', _caption(report) + '.', '',
             '| ' + ' | '.join(HEADERS) + ' |',
             '| --- |' + ' ---: |' * (len(HEADERS) - 1)]
    for row in report['rows']:
        lines.append('| ' + ' | '.join(_cells(row)) + ' |')
    lines.append('')
    lines.extend(f'- {note}' for note in report['notes'])
    lines.extend(f'- {line}' for line in _footnotes(report))
    lines.append('')
    per_seed = ['| score | ' + ' | '.join(
        f'seed {seed}' for seed in report['seeds']) + ' |',
        '| --- |' + ' ---: |' * len(report['seeds'])]
    for row in report['rows']:
        per_seed.append(f"| {row['label']} | " + ' | '.join(
            _num(row['acc'].get(str(seed)), 0.01, 1)
            for seed in report['seeds']) + ' |')
    lines += ['Val top-1 (%) per seed:', ''] + per_seed + ['']
    return '\n'.join(lines)


def write_trials_report(report, work_dir):
    """``trials.json`` and ``trials.md`` in ``work_dir``; return their
    paths."""
    os.makedirs(work_dir, exist_ok=True)
    paths = {ext: osp.join(work_dir, f'{REPORT_NAME}.{ext}')
             for ext in ('json', 'md')}
    atomic_write(paths['json'], lambda f: json.dump(
        _json_ready(report), f, indent=1, allow_nan=False))
    atomic_write(paths['md'],
                 lambda f: f.write(format_trials_markdown(report)))
    return paths


__all__ = ['SearchTrials', 'SCORES', 'NETWORK_SCORES', 'BASELINE', 'X3D',
           'LABELS', 'DEFAULT_NUM_CANDIDATES', 'MAX_CANDIDATES',
           'check_scores', 'score_config', 'permutation_pvalue',
           'count_backbone', 'backbone_cost', 'write_x3d_config',
           'draw_in_band', 'run_owner', 'make_trials_report',
           'format_trials_table', 'format_trials_markdown',
           'write_trials_report', 'config_digest']
