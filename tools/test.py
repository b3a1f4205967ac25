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
    from e3d_plugin.launch import CfgOptionsAction
    parser = _Parser(description='Test (and evaluate) an action recognizer')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--dump', type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
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
    from e3d_plugin.launch import LaunchError, prepare_output_file
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        what = 'is a directory' if osp.isdir(args.checkpoint) else (
            'does not exist')
        raise LaunchError(f"checkpoint '{args.checkpoint}' {what}")
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.dump is not None:
        if not args.dump.endswith(('.pkl', '.pickle')):
            raise LaunchError('--dump must name a .pkl or .pickle file')
        prepare_output_file(args.dump, '--dump')
        dump_metric = dict(type='DumpResults', out_file_path=args.dump)
        evaluator = cfg.get('test_evaluator')
        if evaluator is None:
            raise LaunchError('--dump needs a test_evaluator in the config')
        if isinstance(evaluator, (list, tuple)):
            cfg.test_evaluator = [*evaluator, dump_metric]
        else:
            cfg.test_evaluator = [evaluator, dump_metric]
    cfg.load_from = args.checkpoint
    return cfg


def main(argv=None):
    """Entry point; returns the exit code.

    Everything is built and checked first (config, data, work dir, model,
    dataset, evaluator, the checkpoint against the model); a mistake there
    ends with one line and exit code 2. The test itself runs outside that
    handling.
    """
    args = parse_args(argv)
    import e3d_plugin  # noqa: F401  (bridges the stack, registers E3D)
    from e3d_plugin.launch import (LaunchError, build_runner, check_data,
                                   check_checkpoint_matches, end_distributed,
                                   load_checkpoint_file, load_config,
                                   name_unreadable_videos, prepare_work_dir,
                                   run_or_report, setup_distributed)
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg = merge_args(cfg, args)
        check_data(cfg, ('test', ))
        prepare_work_dir(cfg.work_dir)
        setup_distributed(cfg, args.launcher)
        name_unreadable_videos()
        runner = build_runner(cfg, 'test')
        checkpoint = load_checkpoint_file(args.checkpoint, 'checkpoint')
        check_checkpoint_matches(runner.model, checkpoint, args.checkpoint,
                                 'checkpoint')
        del checkpoint  # the runner loads it again, after its hooks
    except LaunchError as e:
        end_distributed()
        print(f'error: {e}', file=sys.stderr)
        return 2
    return run_or_report(runner.test)


if __name__ == '__main__':
    sys.exit(main())
