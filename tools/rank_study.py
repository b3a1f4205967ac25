"""Does a higher STEntr-Score mean a better trained network? Rank study.

    python tools/rank_study.py SEARCH_CONFIG --train-config TRAIN_CONFIG
        [--num-archs N] [--seeds S] [--work-dir DIR] [--resume]
        [--report-only] [--seed N] [--num-candidates N]
        [--metric NAME] [--keep-checkpoints]
        [--jobs J] [--threads T] [--gpus G [--runs-per-gpu K]]
        [--launcher slurm --partition P [--gpus-per-task N]
         [--cpus-per-task N] [--srun-args "..."]] [--no-frame-cache]
        [--proxies NAME ...]
        [--cfg-options k=v ...] [--train-cfg-options k=v ...]

Draws N distinct structures of SEARCH_CONFIG's space within its budgets
(spread over the STEntr-Score range, at least half near the FLOPs budget,
always the search's best and its starting structure), trains each with
TRAIN_CONFIG (an mmaction2 config with an ``E3D`` backbone; the backbone's
structure and the head's ``in_channels`` are replaced) for S seeds, each run
in its own training process (``python -m e3d_plugin.launch.train``, on the
run queue of :mod:`e3d_plugin.study.queue`: on CPU one single-threaded run
per core at once by default), and reports Kendall tau and Spearman
rho of every proxy (STEntr-Score, STEntr-Score without refinement, FLOPs,
params, layers, RandomScore) against the mean final validation top-1, with
bootstrap intervals, for the whole sample and the near-budget band, next to
the seed-noise ceiling.

``--proxies`` adds network proxies of the zoo (``zen_score``, ``naswot``,
``synflow``, ``grad_norm``, ``zico``; each builds and runs every network
at the study's clip). With ``--report-only`` (or ``--resume``) on a study
whose plan lacks them, they are computed for its planned architectures,
stored in its plan and reported, without training anything again:

    python tools/rank_study.py CONFIG --train-config T --work-dir DIR \\
        --report-only --proxies zen_score naswot synflow grad_norm zico

``--cfg-options`` apply to the search config, ``--train-cfg-options`` to
every training run. ``--resume`` continues a stopped study without
retraining finished runs; ``--report-only`` remakes the report from the
results so far. The work dir receives ``study_plan.json``,
``results.jsonl``, ``runs/``, ``rank_study.json``, ``rank_study.csv`` and
``rank_study.png``; the table goes to stdout, progress to stderr.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments."""
    from e3d_plugin.launch import CfgOptionsAction
    parser = _Parser(description='Rank correlation of training-free '
                     'proxies with trained accuracy')
    parser.add_argument('config', help='search config (space and budgets)')
    parser.add_argument('--train-config', required=True,
                        help='mmaction2 training config with an E3D backbone')
    parser.add_argument('--num-archs', type=int, default=16,
                        help='architectures to train (default 16)')
    parser.add_argument('--seeds', type=int, default=2,
                        help='training seeds per architecture (default 2)')
    parser.add_argument('--work-dir', help='where the study goes')
    parser.add_argument('--resume', action='store_true',
                        help='continue the study in the work dir')
    parser.add_argument('--report-only', action='store_true',
                        help='only remake the report from the results')
    from e3d_plugin.study.queue import add_queue_arguments
    add_queue_arguments(parser)
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the sample and the random baseline')
    parser.add_argument('--num-candidates', type=int,
                        help="override the search's candidates (it finds the "
                        'best structure of the sample)')
    parser.add_argument('--keep-checkpoints', action='store_true',
                        help="keep every run's checkpoints (deleted once its "
                        'result is recorded by default)')
    parser.add_argument('--metric', default='acc/top1',
                        help='validation metric (default acc/top1)')
    calibration = parser.add_argument_group(
        'calibrating a benchmark (see docs/results/calibration_motion_hard.md)')
    calibration.add_argument('--first-seed', type=int, default=0,
                             help='training seeds start here (default 0)')
    calibration.add_argument('--band-share', type=float, default=0.5,
                             help='least share of the sample in the '
                             'near-budget band (default 0.5)')
    calibration.add_argument('--no-fixed', action='store_true',
                             help="leave out the search's best and the "
                             'starting structure')
    calibration.add_argument('--final-epochs', type=int, default=1,
                             help="a run's accuracy: the mean of its last K "
                             'validations (default 1; a report setting)')
    from e3d_plugin.study.proxies import NETWORK_PROXIES
    parser.add_argument('--proxies', nargs='+', metavar='NAME',
                        help='also compute these proxies (' + ', '.join(
                            NETWORK_PROXIES) + '); a study that lacks them '
                        'gets them for its planned architectures, also '
                        'with --report-only')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override search config settings')
    parser.add_argument('--train-cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override training config settings of every '
                        'run')
    return parser.parse_args(argv)


def main(argv=None, train_command=None):
    """Entry point; returns the exit code (2: a bad input, 1: runs
    failed). ``train_command`` replaces the queue's training command (for
    tests)."""
    args = parse_args(argv)
    from e3d_plugin.study import RankStudy, format_table
    from e3d_plugin.study.cli import default_work_dir, run_study
    from e3d_plugin.study.queue import queue_options
    work_dir = default_work_dir(args, 'rank_study_')

    def build():
        return RankStudy(
            args.config, args.train_config, work_dir,
            num_archs=args.num_archs, seeds=args.seeds, seed=args.seed,
            cfg_options=args.cfg_options,
            train_cfg_options=args.train_cfg_options,
            queue=queue_options(args),
            resume=args.resume, metric=args.metric,
            num_candidates=args.num_candidates,
            keep_checkpoints=args.keep_checkpoints,
            first_seed=args.first_seed, band_share=args.band_share,
            include_fixed=not args.no_fixed, final_epochs=args.final_epochs,
            proxies=args.proxies, train_command=train_command)

    return run_study(args, work_dir, build, ['train'], format_table)

if __name__ == '__main__':
    sys.exit(main())
