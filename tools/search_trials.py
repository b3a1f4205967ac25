"""Which score should a search use? Search-outcome trials.

    python tools/search_trials.py SEARCH_CONFIG --train-config TRAIN_CONFIG
        [--scores NAME ...] [--num-candidates N] [--search-seed S]
        [--band B] [--seeds S] [--first-seed N] [--final-epochs K]
        [--x3d-config CONFIG | --no-x3d] [--work-dir DIR] [--resume]
        [--report-only] [--metric NAME] [--keep-checkpoints]
        [--jobs J] [--threads T] [--gpus G [--runs-per-gpu K]]
        [--launcher slurm --partition P [--gpus-per-task N]
         [--cpus-per-task N] [--srun-args "..."]] [--no-frame-cache]
        [--cfg-options k=v ...] [--train-cfg-options k=v ...]

For every score of ``--scores`` (default all: ``stentr``,
``stentr_norefine``, ``stentr_coverage``, ``flops``, ``params``, ``random``,
``zen``, ``naswot``, ``synflow``, ``gradnorm``, ``zico``) runs the search
of SEARCH_CONFIG with that score (same budgets, search seed and
``--num-candidates`` for all; ``random`` takes the first random draw within
the budgets and the near-budget band, ``--band`` times the FLOPs budget),
trains each searched structure with TRAIN_CONFIG (an mmaction2 config with
an ``E3D`` backbone) for ``--seeds`` seeds on the run queue, and X3D at
equal FLOPs alongside (``--x3d-config``, default
``configs/compare/x3d_8x4x1_motion-hard.py``: its backbone and head width
with TRAIN_CONFIG's schedule and data; ``--no-x3d``: none). The table gives
per score the searched structure's FLOPs, params, layers, temporal
receptive field and STEntr-Score, the search's wall time, the mean +- std
val top-1 over the seeds, and against the FLOPs search the difference and
the p-value of a two-sided permutation test. The work is the library's
(:mod:`e3d_plugin.study.trials`).

``--resume`` continues stopped trials (finished searches and runs are not
done again; a search a kill stopped resumes from its checkpoint) and is
refused when any setting differs, the content of a config included;
``--report-only`` remakes the report from what is there (``--final-epochs``
may differ). The work dir receives ``trials_plan.json``, ``searches/``,
``results.jsonl``, ``runs/``, ``trials.json`` and ``trials.md``; the table
goes to stdout, progress to stderr. A bad input ends with one line
``error: ...`` and exit code 2 before anything is written; runs that
failed give exit code 1.
"""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402

#: X3D at the FLOPs of the XS search on the hard benchmark.
X3D_CONFIG = osp.join(ROOT, 'configs', 'compare',
                      'x3d_8x4x1_motion-hard.py')


def parse_args(argv=None):
    """Command-line arguments."""
    from e3d_plugin.launch import CfgOptionsAction
    from e3d_plugin.study.queue import add_queue_arguments
    from e3d_plugin.study.trials import DEFAULT_NUM_CANDIDATES, SCORES
    parser = _Parser(description='Search with every score, train what each '
                     'finds, compare with the FLOPs search')
    parser.add_argument('config', help='search config (space, budgets, '
                        'searcher)')
    parser.add_argument('--train-config', required=True,
                        help='mmaction2 training config with an E3D backbone')
    parser.add_argument('--scores', nargs='+', metavar='NAME',
                        help='scores to search with (default all: ' +
                        ', '.join(SCORES) + ')')
    parser.add_argument('--num-candidates', type=int,
                        default=DEFAULT_NUM_CANDIDATES,
                        help='candidates of every search, and the most '
                        f'draws of random (default {DEFAULT_NUM_CANDIDATES})')
    parser.add_argument('--search-seed', type=int, default=0,
                        help='seed of every search (default 0)')
    parser.add_argument('--band', type=float, default=0.8,
                        help='random draws structures with FLOPs >= BAND x '
                        'the FLOPs budget (default 0.8)')
    parser.add_argument('--seeds', type=int, default=4,
                        help='training seeds per structure (default 4, at '
                        'least 2)')
    parser.add_argument('--first-seed', type=int, default=0,
                        help='training seeds start here (default 0)')
    parser.add_argument('--final-epochs', type=int, default=1,
                        help="a run's accuracy: the mean of its last K "
                        'validations (default 1; a report setting)')
    x3d = parser.add_mutually_exclusive_group()
    x3d.add_argument('--x3d-config', default=X3D_CONFIG,
                     help='config whose backbone trains alongside at equal '
                     'FLOPs (default configs/compare/'
                     'x3d_8x4x1_motion-hard.py)')
    x3d.add_argument('--no-x3d', action='store_true',
                     help='train no X3D alongside')
    parser.add_argument('--work-dir', help='where the trials go')
    parser.add_argument('--resume', action='store_true',
                        help='continue the trials in the work dir')
    parser.add_argument('--report-only', action='store_true',
                        help='only remake the report from what is there')
    parser.add_argument('--metric', default='acc/top1',
                        help='validation metric (default acc/top1)')
    parser.add_argument('--keep-checkpoints', action='store_true',
                        help="keep every run's checkpoints (deleted once its "
                        'result is recorded by default)')
    parser.add_argument('--no-progress', action='store_true',
                        help="no progress lines of the searches")
    add_queue_arguments(parser)
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override search config settings')
    parser.add_argument('--train-cfg-options', nargs='+',
                        action=CfgOptionsAction,
                        help='override training config settings of every '
                        'run')
    return parser.parse_args(argv)


def main(argv=None, train_command=None):
    """Entry point; returns the exit code (2: a bad input, 1: runs
    failed). ``train_command`` replaces the queue's training command (for
    tests)."""
    args = parse_args(argv)
    from e3d_plugin.study.cli import default_work_dir, run_study
    from e3d_plugin.study.queue import queue_options
    from e3d_plugin.study.trials import SearchTrials, format_trials_table
    work_dir = default_work_dir(args, 'search_trials_')

    def build():
        return SearchTrials(
            args.config, args.train_config, work_dir, scores=args.scores,
            num_candidates=args.num_candidates,
            search_seed=args.search_seed, band=args.band, seeds=args.seeds,
            first_seed=args.first_seed,
            x3d_config=None if args.no_x3d else args.x3d_config,
            cfg_options=args.cfg_options,
            train_cfg_options=args.train_cfg_options,
            queue=queue_options(args), resume=args.resume,
            metric=args.metric, final_epochs=args.final_epochs,
            train_command=train_command,
            keep_checkpoints=args.keep_checkpoints,
            progress=not args.no_progress)

    return run_study(args, work_dir, build, ['search', 'train'],
                     format_trials_table)

if __name__ == '__main__':
    sys.exit(main())
