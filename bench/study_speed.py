"""Finished study runs per hour: this tree's run queue against a baseline.

    python bench/study_speed.py [--baseline REV] [--rounds 2] [--seeds 2]
        [--epochs N] [--work-dir DIR] [--data-root data/motion_hard]
        [--configs CONFIG ...] [--only new|old]

A study is many small trainings, so what counts is finished runs per hour
at equal accuracy. Each round trains the same set of runs twice, with the
baseline revision's way and with this tree's, the order swapped every round:

* ``old``: the baseline revision (exported with ``git archive``), as its
  rank study trained: one ``tools/train.py`` process at a time, the
  config's own data loading (decord in worker processes) and PyTorch's
  default threads;
* ``new``: this tree's :class:`~e3d_plugin.study.queue.RunQueue` with its
  defaults (one single-threaded run per core at once, each video decoded
  once into the study's frame cache, which starts empty every round, data
  loaded in the training process, the E3D backbone's numba backward of its
  depthwise convs).

The set is every config of ``--configs`` (by default E3D-XS and the
searched XS structure of the E3D vs X3D comparison, both on the hard
benchmark's schedule) with seeds 0 .. S-1. Per round: the wall time of each
set, the runs per hour of each and their ratio new / old. Per run: final
val top-1 both ways (the same seed gives other trajectories: the data
order and clip offsets are drawn in other processes, and the gradients are
summed in another order), and a profile: start-up (process start to the
first logged iteration, imports and build), training iterations (median
iteration time and data time as mmengine logs them), the rest (validation,
checkpoints). Results go to ``WORK_DIR/study_speed.jsonl`` (one line per
set, appended, so a stopped bench keeps what it measured) and a table on
stdout; ``--report-only`` prints the table of what is there.
"""
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import datetime

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _args import OneLineParser, bounded_int, fail, git_revision  # noqa: E402

DEFAULT_BASELINE = 'd714928'
DEFAULT_CONFIGS = ('configs/e3d/e3d_xs_8x4x1_motion-hard.py',
                   'configs/compare/e3d_xs-searched_8x4x1_motion-hard.py')
METRIC = 'acc/top1'
_STAMP = re.compile(r'^(\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - INFO - '
                    r'Epoch\(train\)')


def export_revision(revision, folder):
    """``git archive`` of ``revision`` unpacked into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    archive = osp.join(folder, 'tree.tar')
    subprocess.run(['git', 'archive', '--format=tar', '-o', archive,
                    revision], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter='data')
    os.remove(archive)
    return folder


def data_options(data_root):
    """``--cfg-options`` that read the hard benchmark from ``data_root``."""
    root = osp.abspath(data_root)
    options = {}
    for split, ann in (('train', 'train_list.txt'), ('val', 'val_list.txt'),
                       ('test', 'val_list.txt')):
        options[f'{split}_dataloader.dataset.ann_file'] = osp.join(root, ann)
        options[f'{split}_dataloader.dataset.data_prefix.video'] = osp.join(
            root, 'videos')
    return options


def run_options(config, seed, epochs, data_root, tree):
    """The ``--cfg-options`` of one run (seed, schedule, data, structure
    file relative to ``tree``)."""
    from e3d_plugin.launch import load_config
    options = dict(data_options(data_root))
    options['randomness.seed'] = seed
    cfg = load_config(osp.join(tree, config))
    structure_file = cfg.model.backbone.get('structure_file')
    if structure_file and not osp.isabs(structure_file):
        options['model.backbone.structure_file'] = osp.join(tree,
                                                            structure_file)
    if epochs is not None:
        options['train_cfg.max_epochs'] = epochs
        # one cosine phase after the warm-up epoch, as the recipe has
        options['param_scheduler.1.T_max'] = max(1, epochs - 1)
        options['param_scheduler.1.end'] = epochs
    return options


def profile(run_dir, elapsed, started_at):
    """Start-up, training and other seconds of a finished run that started
    at ``started_at`` (epoch seconds), from its ``train.log`` and mmengine's
    scalars."""
    from e3d_plugin.study.queue import read_scalars
    train = [r for r in read_scalars(run_dir) if 'lr' in r and 'time' in r]
    times = [r['time'] for r in train]
    data = [r['data_time'] for r in train if 'data_time' in r]
    iterations = max((r.get('step', 0) for r in train), default=0)
    first = None
    started = datetime.fromtimestamp(started_at)
    log = osp.join(run_dir, 'train.log')
    with open(log, errors='replace') as f:
        for line in f:
            found = _STAMP.match(line)
            if found:
                first = datetime.strptime(
                    f'{started.year}/' + found.group(1), '%Y/%m/%d %H:%M:%S')
                break
    iter_time = statistics.median(times) if times else None
    # the first logged line comes after the first logging window
    window = train[0].get('step', 0) if train else 0
    startup = None
    if first is not None and iter_time is not None:
        startup = max(0.0, (first - started.replace(microsecond=0))
                      .total_seconds() - window * iter_time)
    training = iterations * iter_time if iter_time else None
    return dict(iterations=iterations, iter_time_s=iter_time,
                data_time_s=statistics.median(data) if data else None,
                startup_s=startup, train_s=training,
                other_s=(elapsed - training - startup) if (
                    training is not None and startup is not None) else None)


def run_old(tree, runs, work_dir, stream):
    """Train ``runs`` one at a time with the baseline tree's
    ``tools/train.py`` (its data loading and default threads)."""
    from e3d_plugin.study.queue import cli_value, read_accuracy
    records = []
    for name, config, seed, options in runs:
        run_dir = osp.join(work_dir, f'{name}_seed{seed}')
        os.makedirs(run_dir)
        command = [sys.executable, osp.join(tree, 'tools', 'train.py'),
                   osp.join(tree, config), '--work-dir', run_dir,
                   '--cfg-options'] + [f'{k}={cli_value(v)}'
                                       for k, v in options.items()]
        env = {k: v for k, v in os.environ.items()
               if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}
        env['PYTHONPATH'] = tree
        begun, started_at = time.monotonic(), time.time()
        with open(osp.join(run_dir, 'train.log'), 'wb') as log:
            proc = subprocess.run(command, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=tree,
                                  env=env)
        elapsed = time.monotonic() - begun
        values, _ = read_accuracy(run_dir, METRIC)
        record = dict(name=name, seed=seed, returncode=proc.returncode,
                      elapsed_s=elapsed, final=values[-1] if values else None,
                      profile=profile(run_dir, elapsed, started_at))
        stream.write(f"  old {name} seed {seed}: {record['final']} in "
                     f'{elapsed:.0f} s\n')
        stream.flush()
        records.append(record)
    return records


def run_new(runs, work_dir, stream):
    """Train ``runs`` on this tree's run queue with its defaults."""
    from e3d_plugin.study import Run, RunQueue
    queue = RunQueue(work_dir, key_fields=('name', 'seed'), stream=stream)
    queue_runs = [Run(dict(name=name, seed=seed),
                      osp.join(work_dir, 'runs', f'{name}_seed{seed}'),
                      lambda run_dir, config=config: osp.join(ROOT, config),
                      cfg_options=options, label=f'{name} seed {seed}')
                  for name, config, seed, options in runs]
    done = queue.run(queue_runs)
    records = []
    by_key = {(r['name'], r['seed']): r for r in done}
    for run in queue_runs:
        record = by_key[(run.key['name'], run.key['seed'])]
        records.append(dict(
            name=record['name'], seed=record['seed'],
            returncode=record['returncode'], elapsed_s=record['elapsed_s'],
            final=record.get('final'),
            profile=profile(run.run_dir, record['elapsed_s'],
                            record['started_at'])))
    return records, queue.describe()


def report(path):
    """The table of the sets in ``path``."""
    with open(path) as f:
        sets = [json.loads(line) for line in f if line.strip()]
    rounds = {}
    for entry in sets:
        rounds.setdefault(entry['round'], {})[entry['mode']] = entry
    lines = ['| round | old: wall (s), runs/h | new: wall (s), runs/h | '
             'ratio new/old |', '| --- | --- | --- | --- |']
    ratios = []
    for number in sorted(rounds):
        pair = rounds[number]
        cells = []
        for mode in ('old', 'new'):
            entry = pair.get(mode)
            cells.append('-' if entry is None else
                         f"{entry['wall_s']:.0f}, {entry['runs_per_hour']:.1f}")
        ratio = '-'
        if len(pair) == 2:
            value = pair['new']['runs_per_hour'] / pair['old'][
                'runs_per_hour']
            ratios.append(value)
            ratio = f'{value:.2f}'
        lines.append(f'| {number} | {cells[0]} | {cells[1]} | {ratio} |')
    if ratios:
        lines.append(f'ratio: median {statistics.median(ratios):.2f}, range '
                     f'{min(ratios):.2f}..{max(ratios):.2f} over '
                     f'{len(ratios)} round(s)')
    lines += ['', '| run | mode | round | val top-1 final (%) | wall (s) | '
              'start-up (s) | iterations x median iteration (s) | median '
              'data time (s) | rest (s) |', '| --- | --- | --- | ---: | ---: '
              '| ---: | --- | ---: | ---: |']

    def fmt(value, digits=1):
        return '-' if value is None else f'{value:.{digits}f}'

    for entry in sets:
        for run in entry['runs']:
            p = run['profile']
            lines.append(
                f"| {run['name']} seed {run['seed']} | {entry['mode']} | "
                f"{entry['round']} | "
                f"{fmt(None if run['final'] is None else 100 * run['final'])}"
                f" | {fmt(run['elapsed_s'], 0)} | {fmt(p['startup_s'])} | "
                f"{p['iterations']} x {fmt(p['iter_time_s'], 3)} | "
                f"{fmt(p['data_time_s'], 3)} | {fmt(p['other_s'])} |")
    return '\n'.join(lines)


def main(argv=None):
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument('--baseline', default=DEFAULT_BASELINE)
    parser.add_argument('--rounds', type=bounded_int(1, 1000), default=2)
    parser.add_argument('--seeds', type=bounded_int(1, 1000), default=2)
    parser.add_argument('--epochs', type=bounded_int(2, 1000),
                        help="shorter schedule than the configs' (a quick "
                        'check)')
    parser.add_argument('--configs', nargs='+', default=list(DEFAULT_CONFIGS))
    parser.add_argument('--data-root', default='data/motion_hard')
    parser.add_argument('--work-dir',
                        default=osp.join('bench', 'results', 'study_speed'))
    parser.add_argument('--only', choices=('old', 'new'),
                        help='train one side only (no ratio)')
    parser.add_argument('--report-only', action='store_true')
    args = parser.parse_args(argv)
    results = osp.join(args.work_dir, 'study_speed.jsonl')
    if args.report_only:
        if not osp.isfile(results):
            return fail(f'no results in {args.work_dir}')
        try:
            print(report(results))
        except (OSError, ValueError, KeyError, TypeError, IndexError,
                AttributeError, ZeroDivisionError) as e:
            return fail(f'{results} is damaged ({type(e).__name__}: '
                        f'{e}); the bench appends one JSON object per line')
        return 0
    if not osp.isfile(osp.join(args.data_root, 'train_list.txt')):
        return fail(f"--data-root '{args.data_root}' holds no hard "
                    'benchmark; generate it with python tools/data/'
                    'synthetic_motion.py --preset hard --out '
                    f'{args.data_root}')
    for config in args.configs:
        if not osp.isfile(osp.join(ROOT, config)):
            return fail(f"--configs: no config '{config}' in this tree")
    import e3d_plugin  # noqa: F401
    from e3d_plugin.launch import LaunchError, check_output_path
    try:
        check_output_path(args.work_dir, '--work-dir', folder=True)
        if args.only != 'new':
            git_revision(ROOT, args.baseline)
    except (LaunchError, ValueError) as e:
        return fail(e)
    os.makedirs(args.work_dir, exist_ok=True)
    tree = osp.join(osp.abspath(args.work_dir), 'baseline')
    if args.only != 'new' and not osp.isdir(tree):
        try:
            export_revision(args.baseline, tree)
        except subprocess.CalledProcessError:
            return fail(f'--baseline {args.baseline}: not a revision of '
                        'this repository')
    sides = [m for m in ('old', 'new') if args.only in (None, m)]
    stamp = time.strftime('%Y%m%d_%H%M%S')
    for number in range(args.rounds):
        order = sides if number % 2 == 0 else sides[::-1]
        for mode in order:
            base = tree if mode == 'old' else ROOT
            runs = [(osp.splitext(osp.basename(config))[0].split('_8x')[0],
                     config, seed,
                     run_options(config, seed, args.epochs, args.data_root,
                                 base))
                    for seed in range(args.seeds) for config in args.configs]
            work = osp.join(osp.abspath(args.work_dir), stamp,
                            f'round{number}_{mode}')
            print(f'round {number}: {mode} ({len(runs)} runs)', flush=True)
            begun = time.monotonic()
            if mode == 'old':
                records, how = run_old(tree, runs, work, sys.stdout), (
                    'one at a time, default threads, decord workers')
            else:
                records, how = run_new(runs, work, sys.stdout)
            wall = time.monotonic() - begun
            entry = dict(round=number, mode=mode, how=how, wall_s=wall,
                         runs_per_hour=len(runs) * 3600 / wall,
                         load=os.getloadavg(), runs=records,
                         baseline=args.baseline, epochs=args.epochs)
            with open(results, 'a') as f:
                f.write(json.dumps(entry) + '\n')
            print(f'round {number}: {mode}: {wall:.0f} s, '
                  f"{entry['runs_per_hour']:.1f} runs/h", flush=True)
    print(report(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
