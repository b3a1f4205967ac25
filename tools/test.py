"""Test a checkpoint with an mmaction2 config (the flags of mmaction2's
``tools/test.py``), with the E3D plugin loaded.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--dump FILE.pkl]
        [--cfg-options k=v ...] [--launcher pytorch]
"""
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments (those of mmaction2's test.py)."""
    from mmengine.config import DictAction
    parser = _Parser(description='Test (and evaluate) an action recognizer')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--dump', type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command-line flags to the config."""
    from e3d_plugin.launch import LaunchError
    if not osp.isfile(args.checkpoint):
        raise LaunchError(f"checkpoint '{args.checkpoint}' does not exist")
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.dump is not None:
        if not args.dump.endswith(('.pkl', '.pickle')):
            raise LaunchError('--dump must name a .pkl or .pickle file')
        dump_metric = dict(type='DumpResults', out_file_path=args.dump)
        evaluator = cfg.test_evaluator
        if isinstance(evaluator, (list, tuple)):
            cfg.test_evaluator = [*evaluator, dump_metric]
        else:
            cfg.test_evaluator = [evaluator, dump_metric]
    cfg.load_from = args.checkpoint
    return cfg


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    import e3d_plugin  # noqa: F401  (bridges the stack, registers E3D)
    from e3d_plugin.launch import (LaunchError, check_data, load_config,
                                   name_unreadable_videos, run_or_report,
                                   setup_distributed)
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg = merge_args(cfg, args)
        check_data(cfg, ('test', ))
        setup_distributed(cfg, args.launcher)
    except LaunchError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    from mmengine.runner import Runner
    name_unreadable_videos()
    runner = Runner.from_cfg(cfg)
    return run_or_report(runner.test)


if __name__ == '__main__':
    sys.exit(main())
