"""The two reference figures of a benchmark setting: the starting structure
is not saturated, and a single frame is at chance.

    python bench/calibration_checks.py \
        [--train-config configs/e3d/e3d_xs_8x4x1_motion-hard.py] \
        [--train-cfg-options k=v ...] [--seeds 2] [--first-seed 0] \
        [--single-frame-seeds 1] [--final-epochs K] [--work-dir DIR] \
        [--report-only] [--jobs J] [--threads T] ...

A calibration (docs/results/calibration_motion_hard.md) tries settings of
the hard benchmark (data, schedule, evaluation) with a rank study of band
structures; each setting must also keep the training config's own
structure (E3D-XS) below saturation, and a network that sees one frame at
chance. This bench trains, with the setting's ``--train-cfg-options``:

* ``e3d-xs``: the training config as it is, seeds ``first-seed ..
  first-seed + seeds - 1``;
* ``single-frame``: the same with every ``SampleFrames`` of the config's
  pipelines taking ``clip_len=1`` (one frame a clip, for training and
  validation), ``--single-frame-seeds`` seeds.

The runs go through the studies' run queue (:mod:`e3d_plugin.study.queue`:
its own process each, ``WORK_DIR/results.jsonl``, resumable by rerunning
the same command, frame cache, ``--jobs`` / ``--threads`` / ``--gpus`` /
``--launcher slurm``). Prints one row per run: final val top-1 (or the mean
of the last ``--final-epochs`` validations), best, minutes.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_CONFIG = 'configs/e3d/e3d_xs_8x4x1_motion-hard.py'
METRIC = 'acc/top1'
MODELS = ('e3d-xs', 'single-frame')
#: Most seeds of one model (a bench, not a study).
MAX_SEEDS = 16


class ChecksError(ValueError):
    """The bench cannot run as asked (one line for the user)."""


def single_frame_options(cfg):
    """``--cfg-options`` that set ``clip_len=1`` in every ``SampleFrames``
    of the train, val and test pipelines of ``cfg`` (a loaded config)."""
    options = {}
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        dataset = loader.get('dataset') if isinstance(loader, dict) else None
        path = f'{split}_dataloader.dataset'
        while isinstance(dataset, dict) and isinstance(
                dataset.get('dataset'), dict):
            dataset, path = dataset['dataset'], path + '.dataset'
        pipeline = dataset.get('pipeline') if isinstance(dataset,
                                                         dict) else None
        for index, step in enumerate(pipeline or ()):
            kind = step.get('type') if isinstance(step, dict) else None
            if isinstance(kind, str) and kind.split('.')[-1] == \
                    'SampleFrames':
                options[f'{path}.pipeline.{index}.clip_len'] = 1
    if not any(key.startswith('train_') for key in options):
        raise ChecksError('the training config has no SampleFrames in its '
                          'train pipeline: cannot make a single-frame run')
    return options


def plan_runs(train_config, work_dir, train_cfg_options=None, seeds=2,
              first_seed=0, single_frame_seeds=1):
    """The :class:`~e3d_plugin.study.queue.Run` list of the bench."""
    from e3d_plugin.launch import LaunchError, load_config
    from e3d_plugin.study.queue import Run
    try:
        cfg = load_config(train_config, train_cfg_options or None)
    except LaunchError as e:
        raise ChecksError(f'--train-config: {e}') from None
    single = single_frame_options(cfg)
    config = osp.abspath(train_config)
    runs = []
    for model, count, extra in (('e3d-xs', seeds, {}),
                                ('single-frame', single_frame_seeds, single)):
        for seed in range(first_seed, first_seed + count):
            options = dict(train_cfg_options or {})
            options.update(extra)
            options['randomness.seed'] = seed
            runs.append(Run(
                dict(model=model, seed=seed),
                osp.join(work_dir, 'runs', f'{model}_seed{seed}'),
                write_config=lambda run_dir, c=config: c,
                cfg_options=options, label=f'{model} seed {seed}'))
    return runs


def format_rows(runs, finished, final_epochs=1):
    """The bench's table (one row per run) as text."""
    from e3d_plugin.study.report import run_accuracy
    label = ('final' if final_epochs <= 1 else
             f'mean of last {final_epochs}')
    lines = [f'| run | seed | val top-1 ({label}) | best | minutes |',
             '| --- | ---: | ---: | ---: | ---: |']
    for run in runs:
        record = finished.get((run.key['model'], run.key['seed']))
        if record is None:
            lines.append(f"| {run.key['model']} | {run.key['seed']} | not "
                         'trained | | |')
            continue
        lines.append(
            f"| {run.key['model']} | {run.key['seed']} | "
            f'{100 * run_accuracy(record, final_epochs):.1f} % | '
            f"{100 * record['best']:.1f} % | "
            f"{record['elapsed_s'] / 60:.1f} |")
    return '\n'.join(lines)


def parse_args(argv=None):
    from e3d_plugin.launch import CfgOptionsAction, OneLineArgumentParser
    from e3d_plugin.study.queue import add_queue_arguments
    parser = OneLineArgumentParser(
        description='Saturation and single-frame checks of a benchmark '
        'setting')
    parser.add_argument('--train-config', default=DEFAULT_CONFIG,
                        help=f'training config (default {DEFAULT_CONFIG})')
    parser.add_argument('--train-cfg-options', nargs='+',
                        action=CfgOptionsAction,
                        help='the setting: overrides of every run')
    parser.add_argument('--seeds', type=int, default=2,
                        help='seeds of the training config (default 2)')
    parser.add_argument('--first-seed', type=int, default=0,
                        help='seeds start here (default 0)')
    parser.add_argument('--single-frame-seeds', type=int, default=1,
                        help='seeds of the single-frame run (default 1)')
    parser.add_argument('--final-epochs', type=int, default=1,
                        help="a run's accuracy: the mean of its last K "
                        'validations (default 1)')
    parser.add_argument('--work-dir', default='work_dirs/calibration_checks',
                        help='where the runs go')
    parser.add_argument('--report-only', action='store_true',
                        help='only print the table of the runs there')
    add_queue_arguments(parser)
    args = parser.parse_args(argv)
    for flag, value, low, high in (
            ('--seeds', args.seeds, 1, MAX_SEEDS),
            ('--single-frame-seeds', args.single_frame_seeds, 0, MAX_SEEDS),
            ('--final-epochs', args.final_epochs, 1, 1024)):
        if not low <= value <= high:
            parser.error(f'{flag} must be an integer in [{low}, {high}], '
                         f'got {value}')
    if not 0 <= args.first_seed < 2**31:
        parser.error(f'--first-seed must be an integer in [0, 2**31), got '
                     f'{args.first_seed}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from e3d_plugin.study import StudyError
    from e3d_plugin.study.queue import RunQueue, queue_options
    try:
        runs = plan_runs(args.train_config, args.work_dir,
                         args.train_cfg_options, args.seeds, args.first_seed,
                         args.single_frame_seeds)
        queue = RunQueue(args.work_dir, key_fields=('model', 'seed'),
                         metric=METRIC, error=ChecksError,
                         **queue_options(args))
        if not args.report_only:
            queue.run(runs)
        finished = queue.finished()
    except (ChecksError, StudyError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_rows(runs, finished, args.final_epochs))
    return 0 if all((r.key['model'], r.key['seed']) in finished
                    for r in runs) else 1


if __name__ == '__main__':
    sys.exit(main())
