"""Train a recognizer from an mmaction2 config (the flags of mmaction2's
``tools/train.py``), with the E3D plugin loaded.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--no-validate] [--auto-scale-lr] [--seed N] [--diff-rank-seed]
        [--deterministic] [--cfg-options k=v ...] [--launcher pytorch]

On a machine without CUDA, ``--launcher pytorch`` (``tools/dist_train.sh``)
runs over gloo.
"""
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments (those of mmaction2's train.py)."""
    from mmengine.config import DictAction
    parser = _Parser(description='Train an action recognizer')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no CKPT is given')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision training (needs a GPU)')
    parser.add_argument(
        '--no-validate', action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate with the total batch size')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument(
        '--diff-rank-seed', action='store_true',
        help='a different seed on every rank')
    parser.add_argument(
        '--deterministic', action='store_true',
        help='deterministic cuDNN algorithms')
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
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise LaunchError('--amp needs a GPU; this machine has no CUDA')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise LaunchError(f"--resume: checkpoint '{args.resume}' does "
                              'not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise LaunchError(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                'config')
        cfg.auto_scale_lr.enable = True
    if cfg.get('randomness') is None or args.seed is not None:
        cfg.randomness = dict(
            seed=args.seed,
            diff_rank_seed=args.diff_rank_seed,
            deterministic=args.deterministic)
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
        check_data(cfg, ('train', ) if args.no_validate else
                   ('train', 'val'))
        setup_distributed(cfg, args.launcher)
    except LaunchError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    from mmengine.runner import Runner
    name_unreadable_videos()
    runner = Runner.from_cfg(cfg)
    return run_or_report(runner.train)


if __name__ == '__main__':
    sys.exit(main())
