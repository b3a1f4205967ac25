"""E3D vs X3D at equal FLOPs on the hard motion benchmark.

    python bench/e3d_vs_x3d.py [--seeds 3] [--work-dir DIR] [--resume]
        [--epochs N] [--data-root DIR] [--keep-checkpoints]
    python bench/e3d_vs_x3d.py --report-only [--work-dir DIR]
    python bench/e3d_vs_x3d.py --flops        # FLOPs and params only
    python bench/e3d_vs_x3d.py --gamma-grid   # X3D's FLOPs over a gamma grid
    python bench/e3d_vs_x3d.py --draw-random [--write]

Three configs of ``configs/compare/`` share the schedule of
``configs/e3d/e3d_xs_8x4x1_motion-hard.py`` and differ only in the backbone
(and the head's ``in_channels``): the STEntr-searched XS structure, a
random structure of the same space at the same budget, and mmaction2's
``X3D`` scaled to the same FLOPs. Each is trained with seeds 0 .. S-1 on the
run queue of the rank study (:mod:`e3d_plugin.study.queue`: each run in its
own process, seed by seed so that a stopped comparison has whole seeds done
first, by default one single-threaded run per CPU core at once;
``--jobs``, ``--threads``, ``--gpus``, ``--launcher slurm`` as for
``tools/rank_study.py``). Per run the queue records the final and best val
top-1 and the training speed in clips/s: the training batch size over the
median of the iteration times mmengine logs (each the mean over a window of
``log_processor.window_size`` iterations, data loading included; the median
keeps the start-up window out). Clips/s depend on how many runs share the
machine: compare models trained with the same queue settings. The table gives, per model, the
mean, standard deviation (over seeds, ``n - 1``) and min-max of each, with
the backbone's FLOPs (conv multiply-adds of one clip at batch 1, counted by
``mmengine.analysis.FlopAnalyzer``) and parameters.

Work dir (default ``work_dirs/e3d_vs_x3d``): ``settings.json`` (what makes
two runs of the bench the same comparison), ``configs/<model>.py`` (the
config each run trains: the committed one, with ``--epochs`` /
``--data-root`` applied), ``results.jsonl`` (one line per finished or failed
run, append-only, as the rank study writes it), ``runs/<model>_seed<s>/``
(``train.log`` and mmengine's work dir) and ``e3d_vs_x3d.json`` (the table
as data). ``--resume`` skips the runs already finished; a rerun without it
refuses a work dir that holds a comparison.

``--epochs N`` shortens the schedule for a quick check (the LR schedulers
that ended with the last epoch end with epoch N; schedulers starting at or
after N are dropped); ``--data-root DIR`` trains on another copy of the hard
benchmark (the generator's layout: ``train_list.txt``, ``val_list.txt``,
``videos/``).

``--draw-random`` repeats the documented draw of the random structure (see
:func:`draw_random_structure`) and prints it; with ``--write`` it writes the
committed JSON file. ``--gamma-grid`` prints the FLOPs of X3D over the gamma
grid the X3D config's gammas were chosen from.

A bad input (a missing data set, a work dir holding another comparison)
ends in one line ``error: ...`` and exit code 2.
"""
import copy
import itertools
import json
import os
import os.path as osp
import random
import statistics
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

#: The compared models: name -> committed config (relative to the root).
CONFIGS = {
    'e3d-searched': 'configs/compare/e3d_xs-searched_8x4x1_motion-hard.py',
    'e3d-random': 'configs/compare/e3d_xs-random_8x4x1_motion-hard.py',
    'x3d': 'configs/compare/x3d_8x4x1_motion-hard.py',
}
#: The search the searched structure comes from (its space and budgets).
SEARCH_CONFIG = 'configs/search_e3d_xs_motion-hard.py'
SEARCHED_FILE = 'configs/compare/structures/e3d_xs-searched_motion-hard.json'
RANDOM_FILE = 'configs/compare/structures/e3d_xs-random_motion-hard.json'
#: Settings of the search config as the comparison's structures were drawn:
#: before the config refused motion-blind structures (the random structure
#: is one, which is part of what the comparison shows).
SEARCH_OPTIONS = {'space.min_temporal_rf': 1}
#: The draw of the random structure: seed of ``random.Random`` and the
#: largest relative FLOPs distance to the searched structure.
RANDOM_SEED = 0
FLOPS_TOLERANCE = 0.10
#: The grid X3D's gammas were chosen from (X3D-XS is 1.0, 2.25, 2.2).
GAMMA_GRID = dict(gamma_w=(0.25, 0.5, 0.75, 1.0),
                  gamma_b=(1.0, 1.25, 1.5, 1.75, 2.0, 2.25),
                  gamma_d=(0.5, 1.0, 1.2, 1.5, 2.0, 2.2))
RESULTS_NAME = 'results.jsonl'
SETTINGS_NAME = 'settings.json'
TABLE_NAME = 'e3d_vs_x3d.json'
METRIC = 'acc/top1'


#: Largest --seeds and --epochs.
MAX_SEEDS = 1000
MAX_EPOCHS = 1000


class BenchError(ValueError):
    """The comparison cannot run as asked (one line for the user)."""


def _rooted(path):
    """``path`` relative to the repository root (absolute paths kept)."""
    return path if osp.isabs(path) else osp.join(ROOT, path)


# ------------------------------------------------------------- the draw
def load_search_space(search_config=SEARCH_CONFIG):
    """``(space, template, budgets, image_size, frames)`` of a search
    config: its :class:`~e3d_plugin.nas.E3DSearchSpace`, its starting
    structure (the skeleton samples take), its budgets and clip, as the
    search builds them (:func:`~e3d_plugin.nas.build_search`: the clip is
    ``search.image_size`` / ``search.frames`` when given, else the
    space's)."""
    from mmengine.config import Config

    from e3d_plugin.nas import build_search
    cfg = Config.fromfile(_rooted(search_config))
    cfg.merge_from_dict(SEARCH_OPTIONS)
    built = build_search(cfg, progress=False)
    return (built.space, built.init_structure, built.budgets,
            built.image_size, built.frames)


def draw_random_structure(search_config=SEARCH_CONFIG,
                          reference=SEARCHED_FILE, seed=RANDOM_SEED,
                          tolerance=FLOPS_TOLERANCE, max_draws=100000):
    """The random structure of the comparison: draws
    ``space.sample(template, rng)`` from one ``random.Random(seed)`` and
    returns the first draw within every budget of ``search_config`` and
    within ``tolerance`` (relative) of the FLOPs of ``reference`` (the
    searched structure), both at the search's clip; no draw is skipped for
    any other reason.

    Returns a dict: ``structure``, ``draw`` (1-based index of the draw),
    ``cost`` (flops, params, layers) and ``reference_flops``.
    """
    from e3d_plugin.cost import compute_cost
    from e3d_plugin.structure import load_structure
    space, template, budgets, image_size, frames = load_search_space(
        search_config)
    target = compute_cost(load_structure(_rooted(reference)), image_size,
                          frames).flops
    rng = random.Random(seed)
    for draw in range(1, max_draws + 1):
        structure = space.sample(template, rng)
        cost = compute_cost(structure, image_size, frames)
        cost = dict(flops=cost.flops, params=cost.params,
                    layers=cost.layers)
        within = all(cost[key] <= limit for key, limit in budgets.items()
                     if key in cost)
        if within and abs(cost['flops'] - target) <= tolerance * target:
            return dict(structure=structure, draw=draw, cost=cost,
                        reference_flops=target)
    raise BenchError(f'no structure within the budgets and {tolerance:.0%} '
                     f'of {target} FLOPs in {max_draws} draws')


def temporal_blocks(structure):
    """Indices of the blocks whose kernels reach over time (``kt > 1``)."""
    return [index for index, block in enumerate(structure.to_dicts())
            if block.get('kt', 1) > 1]


# ------------------------------------------------------------- the costs
def count_backbone(backbone, frames, size):
    """``(flops, params)`` of a built backbone: conv multiply-adds of one
    ``1 x 3 x frames x size x size`` clip by ``FlopAnalyzer`` (on a
    contiguous float32 copy) and its learnable parameters."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    model = copy.deepcopy(backbone).float().cpu().to(
        memory_format=torch.contiguous_format)
    model.eval()  # not chained: X3D's train() returns None
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.randn(1, 3, frames, size, size))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_op = analyzer.by_operator()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return int(by_op.get('conv', 0)), int(params)


def build_backbone(backbone_cfg):
    """The backbone of a config's ``model.backbone`` (E3D or mmaction2's),
    a ``structure_file`` read relative to the repository root."""
    import e3d_plugin.models  # noqa: F401  (first: mmaction2 needs its fixes)
    import mmaction.models  # noqa: F401  (registers X3D and the heads)
    from mmaction.registry import MODELS
    backbone_cfg = copy.deepcopy(dict(backbone_cfg))
    if isinstance(backbone_cfg.get('structure_file'), str):
        backbone_cfg['structure_file'] = _rooted(
            backbone_cfg['structure_file'])
    return MODELS.build(backbone_cfg)


def config_clip_size(cfg):
    """``(frames, size)`` of a config's clip (its validation pipeline)."""
    from e3d_plugin.launch import config_clip
    frames, (height, width), _ = config_clip(cfg)
    if height != width:
        raise BenchError(f'the clip is {height}x{width}; the comparison '
                         'expects square clips')
    return frames, height


def config_cost(config):
    """FLOPs and params of a config's backbone at its clip: a dict with
    ``flops`` and ``params`` (FlopAnalyzer), ``cost_flops`` (the cost model,
    E3D only, else None), ``frames``, ``size`` and the backbone ``type``."""
    from mmengine.config import Config
    cfg = Config.fromfile(_rooted(config))
    frames, size = config_clip_size(cfg)
    backbone = build_backbone(cfg.model.backbone)
    flops, params = count_backbone(backbone, frames, size)
    cost_flops = None
    if hasattr(backbone, 'structure'):
        from e3d_plugin.cost import compute_cost
        cost_flops = compute_cost(backbone.structure, size, frames).flops
    return dict(flops=flops, params=params, cost_flops=cost_flops,
                frames=frames, size=size,
                type=cfg.model.backbone.get('type'))


def x3d_grid(grid=None, frames=8, size=40):
    """X3D's FLOPs (FlopAnalyzer) and params over every combination of
    ``grid`` (``gamma_w``, ``gamma_b``, ``gamma_d`` -> values); one dict
    per combination, with the stage depths, base width and output width."""
    import e3d_plugin  # noqa: F401  (first: mmaction2 needs its fixes)
    from mmaction.models.backbones import X3D
    grid = grid or GAMMA_GRID
    rows, seen = [], {}
    for gamma_w, gamma_b, gamma_d in itertools.product(
            grid['gamma_w'], grid['gamma_b'], grid['gamma_d']):
        model = X3D(gamma_w=gamma_w, gamma_b=gamma_b, gamma_d=gamma_d)
        # gamma_w rounds to a multiple of 8: equal networks count once
        key = (model.base_channels, tuple(model.stage_blocks), gamma_b)
        if key not in seen:
            seen[key] = count_backbone(model, frames, size)
        flops, params = seen[key]
        rows.append(dict(gamma_w=gamma_w, gamma_b=gamma_b, gamma_d=gamma_d,
                         base_channels=model.base_channels,
                         stage_blocks=list(model.stage_blocks),
                         out_channels=model.feat_dim, flops=flops,
                         params=params))
    return rows


# ------------------------------------------------------------- the runs
def _literal(value):
    """A config value written as Python (dicts as ``dict(...)`` only where
    every key is an identifier)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            inner = ', '.join(f'{k}={_literal(v)}' for k, v in value.items())
            return f'dict({inner})'
        inner = ', '.join(f'{k!r}: {_literal(v)}' for k, v in value.items())
        return '{' + inner + '}'
    if isinstance(value, (list, tuple)):
        inner = ', '.join(_literal(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner},)'
    return repr(value)


def shorten_schedulers(schedulers, max_epochs, epochs):
    """``schedulers`` (``param_scheduler`` dicts of a ``max_epochs``
    schedule) for a run of ``epochs``: one that ended with the last epoch
    ends with epoch ``epochs`` (a cosine's ``T_max`` follows), one that
    starts at or after ``epochs`` is dropped."""
    out = []
    for scheduler in schedulers:
        scheduler = dict(scheduler)
        begin = scheduler.get('begin', 0)
        if begin >= epochs:
            continue
        if scheduler.get('end') == max_epochs:
            scheduler['end'] = epochs
            if 'T_max' in scheduler:
                scheduler['T_max'] = epochs - begin
        out.append(scheduler)
    return out


def write_bench_config(path, config, epochs=None, data_root=None):
    """The config a model's runs train: ``config`` (committed) with the
    schedule shortened to ``epochs`` and the data read from ``data_root``
    where given; return its path."""
    from mmengine.config import Config
    lines = ['# Generated by bench/e3d_vs_x3d.py: the config below, as '
             'this comparison trains it.',
             f'_base_ = [{_rooted(config)!r}]', '']
    if epochs is not None:
        cfg = Config.fromfile(_rooted(config))
        max_epochs = cfg.train_cfg.max_epochs
        schedulers = [s.to_dict() if hasattr(s, 'to_dict') else dict(s)
                      for s in cfg.get('param_scheduler') or []]
        lines += [
            f'train_cfg = dict(max_epochs={int(epochs)})',
            'param_scheduler = ' + _literal(
                shorten_schedulers(schedulers, max_epochs, epochs)), '']
    if data_root is not None:
        for split, ann in (('train', 'train_list.txt'),
                           ('val', 'val_list.txt'),
                           ('test', 'val_list.txt')):
            dataset = dict(ann_file=osp.join(data_root, ann),
                           data_prefix=dict(video=osp.join(data_root,
                                                           'videos')))
            lines.append(f'{split}_dataloader = dict(dataset='
                         f'{_literal(dataset)})')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def spread(values):
    """``dict(n, mean, std, min, max)`` of ``values`` (std over ``n - 1``,
    None below two values); None when there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return dict(n=len(values), mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else None,
                min=min(values), max=max(values))


class Comparison:
    """Train every model with every seed, one process per run, and tabulate
    the results (see the module docstring)."""

    def __init__(self, work_dir, seeds=3, epochs=None, data_root=None,
                 resume=False, keep_checkpoints=False, configs=None,
                 train_command=None, stream=None, queue=None):
        if not isinstance(seeds, int) or seeds < 1:
            raise BenchError(f'--seeds must be an integer >= 1, got {seeds}')
        if seeds > MAX_SEEDS:
            raise BenchError(f'--seeds must be at most {MAX_SEEDS}, got '
                             f'{seeds}')
        if epochs is not None and (not isinstance(epochs, int) or
                                   epochs < 1):
            raise BenchError(
                f'--epochs must be an integer >= 1, got {epochs}')
        if epochs is not None and epochs > MAX_EPOCHS:
            raise BenchError(f'--epochs must be at most {MAX_EPOCHS}, got '
                             f'{epochs}')
        from e3d_plugin.launch import LaunchError, check_output_path
        try:
            check_output_path(work_dir, '--work-dir', folder=True)
        except LaunchError as e:
            raise BenchError(str(e)) from None
        self.work_dir = osp.abspath(work_dir)
        self.seeds = seeds
        self.epochs = epochs
        self.data_root = osp.abspath(data_root) if data_root else None
        self.resume = resume
        self.keep_checkpoints = keep_checkpoints
        self.configs = dict(configs or CONFIGS)
        self.stream = stream or sys.stderr
        from e3d_plugin.study import RunQueue
        self.queue = RunQueue(self.work_dir, key_fields=('model', 'seed'),
                              metric=METRIC,
                              keep_checkpoints=keep_checkpoints,
                              train_command=train_command,
                              stream=self.stream, error=BenchError,
                              **dict(queue or {}))

    def log(self, text):
        """One progress line."""
        self.stream.write(text + '\n')
        self.stream.flush()

    @property
    def results_path(self):
        """The append-only results file."""
        return self.queue.results_path

    def settings(self):
        """What makes two runs of the bench the same comparison."""
        return dict(configs={k: _rooted(v) for k, v in self.configs.items()},
                    epochs=self.epochs, data_root=self.data_root)

    def run_config(self, name):
        """The generated config the runs of model ``name`` train."""
        return osp.join(self.work_dir, 'configs', f'{name}.py')

    def run_dir(self, name, seed):
        """The work dir of one run."""
        return osp.join(self.work_dir, 'runs', f'{name}_seed{seed}')

    def prepare(self):
        """Check the work dir and the data, write the settings and the run
        configs; return the batch size of each model."""
        from e3d_plugin.launch import LaunchError, check_data, load_config
        settings_path = osp.join(self.work_dir, SETTINGS_NAME)
        if osp.exists(settings_path):
            try:
                with open(settings_path) as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                raise BenchError(f'{settings_path} is unreadable ({e}); '
                                 'choose another --work-dir') from None
            if not self.resume:
                raise BenchError(
                    f'work dir {self.work_dir} already holds a comparison; '
                    'pass --resume to continue it or choose another '
                    '--work-dir')
            for key, value in self.settings().items():
                if old.get(key) != value:
                    raise BenchError(
                        f'--resume: the comparison in {self.work_dir} has '
                        f'{key} {old.get(key)!r}, not {value!r}; repeat its '
                        'settings or choose another --work-dir')
        elif self.resume:
            raise BenchError(f'--resume: no comparison in {self.work_dir} '
                             f'(no {SETTINGS_NAME}); run without it')
        if self.data_root is not None and not all(
                osp.exists(osp.join(self.data_root, name))
                for name in ('train_list.txt', 'val_list.txt', 'videos')):
            what = ('does not exist' if not osp.exists(self.data_root) else
                    'holds no hard benchmark (train_list.txt, val_list.txt, '
                    'videos/)')
            raise BenchError(
                f"--data-root '{self.data_root}' {what}; generate it with "
                'python tools/data/synthetic_motion.py --preset hard --out '
                f'{self.data_root}')
        created = not osp.exists(self.work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        batch_sizes = {}
        try:
            for name, config in self.configs.items():
                path = write_bench_config(self.run_config(name), config,
                                          self.epochs, self.data_root)
                try:
                    cfg = load_config(path)
                    check_data(cfg, splits=('train', 'val'))
                except LaunchError as e:
                    raise BenchError(f'{name}: {e}') from None
                batch_sizes[name] = int(cfg.train_dataloader.batch_size)
        except BenchError:
            if created:  # nothing but the run configs written just now
                import shutil
                shutil.rmtree(self.work_dir, ignore_errors=True)
            raise
        # the seed count may grow on --resume: kept for --report-only
        settings = dict(self.settings(), seeds=self.seeds)
        from e3d_plugin.fileio import atomic_write
        atomic_write(settings_path,
                     lambda f: json.dump(settings, f, indent=1))
        return batch_sizes

    def runs(self):
        """Every ``(model, seed)``, seed by seed."""
        return [(name, seed) for seed in range(self.seeds)
                for name in self.configs]

    def queue_runs(self, batch_sizes=None):
        """The :class:`~e3d_plugin.study.queue.Run` of every
        ``(model, seed)``, seed by seed."""
        from e3d_plugin.study import Run
        batch_sizes = batch_sizes or {}
        return [Run(dict(model=name, seed=seed), self.run_dir(name, seed),
                    lambda run_dir, name=name: self.run_config(name),
                    cfg_options={'randomness.seed': seed},
                    label=f'{name} seed {seed}',
                    batch_size=batch_sizes.get(name))
                for name, seed in self.runs()]

    def train(self):
        """Train the runs not finished yet on the run queue (see
        :mod:`e3d_plugin.study.queue`: each in its own process, several at
        once); return their records."""
        batch_sizes = self.prepare()
        return self.queue.run(self.queue_runs(batch_sizes))

    def table(self, costs=None):
        """Per model: its costs and the spread over finished seeds of the
        final and best val top-1 and the clips/s (JSON-ready dict)."""
        done = self.queue.finished(self.queue.load_results(repair=False))
        costs = costs or {name: config_cost(config)
                          for name, config in self.configs.items()}
        rows = {}
        for name, config in self.configs.items():
            runs = [done[(name, seed)] for seed in range(self.seeds)
                    if (name, seed) in done]
            rows[name] = dict(
                config=config, **costs[name],
                seeds=[r['seed'] for r in runs],
                final=spread([100 * r['final'] for r in runs]),
                best=spread([100 * r['best'] for r in runs]),
                clips_per_s=spread([r.get('clips_per_s') for r in runs]))
        return dict(settings=self.settings(), seeds=self.seeds, models=rows)


def _fmt(stats, digits=1):
    if stats is None:
        return '-'
    std = '-' if stats['std'] is None else f"{stats['std']:.{digits}f}"
    return (f"{stats['mean']:.{digits}f} ± {std} "
            f"({stats['min']:.{digits}f}-{stats['max']:.{digits}f})")


def format_table(table):
    """The comparison as a Markdown table."""
    lines = [
        '| model | backbone FLOPs (M) | backbone params (M) | runs | val '
        'top-1 final (%) | val top-1 best (%) | train clips/s |',
        '| --- | ---: | ---: | ---: | --- | --- | --- |']
    for name, row in table['models'].items():
        lines.append(
            f"| {name} | {row['flops'] / 1e6:.2f} | "
            f"{row['params'] / 1e6:.3f} | {len(row['seeds'])}/"
            f"{table['seeds']} | {_fmt(row['final'])} | {_fmt(row['best'])}"
            f" | {_fmt(row['clips_per_s'])} |")
    lines.append('mean ± std over seeds (min-max); FLOPs: conv '
                 'multiply-adds of one clip at batch 1 (FlopAnalyzer)')
    return '\n'.join(lines)


def format_costs(costs):
    """FLOPs and params of each model's backbone as a Markdown table."""
    reference = costs.get('e3d-searched', {}).get('flops')
    lines = ['| model | backbone | clip | FLOPs FlopAnalyzer (M) | FLOPs '
             'cost model (M) | vs searched | params (M) |',
             '| --- | --- | --- | ---: | ---: | ---: | ---: |']
    for name, cost in costs.items():
        model = ('-' if cost['cost_flops'] is None
                 else f"{cost['cost_flops'] / 1e6:.3f}")
        ratio = (f"{100 * (cost['flops'] / reference - 1):+.1f} %"
                 if reference else '-')
        lines.append(f"| {name} | {cost['type']} | {cost['frames']}x"
                     f"{cost['size']}x{cost['size']} | "
                     f"{cost['flops'] / 1e6:.3f} | {model} | {ratio} | "
                     f"{cost['params'] / 1e6:.3f} |")
    return '\n'.join(lines)


def format_grid(rows, reference):
    """The gamma grid as a Markdown table, ``reference`` FLOPs marked."""
    lines = ['| gamma_w | gamma_b | gamma_d | base width | stage depths | '
             'out channels | FLOPs (M) | vs searched | params (M) |',
             '| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |']
    for row in rows:
        off = row['flops'] / reference - 1
        mark = ' **' if abs(off) <= FLOPS_TOLERANCE else ''
        lines.append(
            f"| {row['gamma_w']} | {row['gamma_b']} | {row['gamma_d']} | "
            f"{row['base_channels']} | {row['stage_blocks']} | "
            f"{row['out_channels']} | {row['flops'] / 1e6:.2f} | "
            f"{100 * off:+.1f} %{mark} | {row['params'] / 1e6:.3f} |")
    lines.append(f'** within {FLOPS_TOLERANCE:.0%} of the searched '
                 f'structure ({reference / 1e6:.3f} M)')
    return '\n'.join(lines)


def parse_args(argv=None):
    """Command-line arguments."""
    from e3d_plugin.launch import OneLineArgumentParser
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int,
                        help='seeds per model (0 .. S-1); default 3, with '
                        '--report-only those of the last run')
    parser.add_argument('--work-dir', default=osp.join('work_dirs',
                                                       'e3d_vs_x3d'))
    parser.add_argument('--resume', action='store_true',
                        help='continue the comparison in the work dir')
    parser.add_argument('--epochs', type=int,
                        help='shorter schedule, for a quick check')
    parser.add_argument('--data-root',
                        help='another copy of the hard benchmark')
    parser.add_argument('--keep-checkpoints', action='store_true',
                        help="keep each run's .pth files")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--report-only', action='store_true',
                      help='print the table of the finished runs')
    mode.add_argument('--flops', action='store_true',
                      help="print the backbones' FLOPs and params")
    mode.add_argument('--gamma-grid', action='store_true',
                      help="print X3D's FLOPs over the gamma grid")
    mode.add_argument('--draw-random', action='store_true',
                      help='repeat the draw of the random structure')
    parser.add_argument('--write', action='store_true',
                        help='with --draw-random: write its JSON file')
    from e3d_plugin.study.queue import add_queue_arguments
    add_queue_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the comparison (or one of the printing modes)."""
    args = parse_args(argv)
    try:
        if args.write and not args.draw_random:
            raise BenchError('--write goes with --draw-random')
        if args.draw_random:
            drawn = draw_random_structure()
            print(f"draw {drawn['draw']} of random.Random({RANDOM_SEED}): "
                  f"{drawn['cost']} (searched: {drawn['reference_flops']} "
                  f"FLOPs); temporal blocks "
                  f"{temporal_blocks(drawn['structure']) or 'none'}")
            print(drawn['structure'].to_json(indent=2))
            if args.write:
                from e3d_plugin.structure import save_structure
                save_structure(drawn['structure'], _rooted(RANDOM_FILE))
                print(f'written to {RANDOM_FILE}')
            return 0
        if args.gamma_grid:
            searched = config_cost(CONFIGS['e3d-searched'])
            print(format_grid(x3d_grid(frames=searched['frames'],
                                       size=searched['size']),
                              searched['flops']))
            return 0
        if args.flops:
            print(format_costs({name: config_cost(config)
                                for name, config in CONFIGS.items()}))
            return 0
        from e3d_plugin.study.queue import queue_options
        bench = Comparison(args.work_dir,
                           seeds=3 if args.seeds is None else args.seeds,
                           queue=queue_options(args),
                           epochs=args.epochs, data_root=args.data_root,
                           resume=args.resume or args.report_only,
                           keep_checkpoints=args.keep_checkpoints)
        if args.report_only:
            # the table of the comparison as it was run
            path = osp.join(bench.work_dir, SETTINGS_NAME)
            if not osp.exists(path):
                raise BenchError(f'--report-only: no comparison in '
                                 f'{bench.work_dir}')
            try:
                with open(path) as f:
                    saved = json.load(f)
                if not isinstance(saved, dict):
                    raise ValueError('not a JSON object')
            except (OSError, ValueError) as e:
                raise BenchError(f'--report-only: {path} is unreadable '
                                 f'({e})') from None
            bench.epochs, bench.data_root = (saved.get('epochs'),
                                             saved.get('data_root'))
            bench.seeds = (args.seeds if args.seeds is not None else
                           saved.get('seeds') or 3)
        else:
            bench.train()
        costs = {name: config_cost(config)
                 for name, config in CONFIGS.items()}
        table = bench.table(costs)
        with open(osp.join(bench.work_dir, TABLE_NAME), 'w') as f:
            json.dump(table, f, indent=1)
        print(format_costs(costs))
        print()
        print(format_table(table))
        missing = sum(table['seeds'] - len(row['seeds'])
                      for row in table['models'].values())
        if missing:
            print(f'{missing} run(s) not finished; rerun with --resume')
            return 1
        return 0
    except BenchError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
