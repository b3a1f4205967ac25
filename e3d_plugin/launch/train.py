"""Train a recognizer from an mmaction2 config (the flags of mmaction2's
``tools/train.py``), with the E3D plugin loaded: the training entry point of
the installed package.

    python -m e3d_plugin.launch.train CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--no-validate] [--auto-scale-lr] [--seed N]
        [--diff-rank-seed] [--deterministic] [--cfg-options k=v ...]
        [--launcher pytorch]

``tools/train.py`` is this module run from a checkout; the run queue of the
studies (:mod:`e3d_plugin.study.queue`) starts it as a module, so that it
works from an installed package. On a machine without CUDA,
``--launcher pytorch`` (``tools/dist_train.sh``) runs over gloo.
"""
import os
import os.path as osp
import sys

from .errors import OneLineArgumentParser as _Parser


def parse_args(argv=None):
    """Command-line arguments (those of mmaction2's train.py)."""
    from e3d_plugin.launch import CfgOptionsAction
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
        if not isinstance(cfg.get('optim_wrapper'), dict):
            raise LaunchError('--amp needs an optim_wrapper in the config')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if osp.isdir(args.resume):
            raise LaunchError(f"--resume '{args.resume}' is a directory; "
                              'give the checkpoint file in it, or --resume '
                              'alone for the latest one of the work dir')
        if not osp.isfile(args.resume):
            raise LaunchError(f"--resume: checkpoint '{args.resume}' does "
                              'not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
            raise LaunchError(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                'config')
        cfg.auto_scale_lr.enable = True
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise LaunchError(f'--seed must be in [0, 2**32), got {args.seed}')
    if cfg.get('randomness') is None or args.seed is not None:
        cfg.randomness = dict(
            seed=args.seed,
            diff_rank_seed=args.diff_rank_seed,
            deterministic=args.deterministic)
    return cfg


def _resume_file(cfg):
    """The checkpoint a resume will read, or None (a fresh start)."""
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    from mmengine.runner import find_latest_checkpoint
    return find_latest_checkpoint(cfg.work_dir)


def main(argv=None):
    """Entry point; returns the exit code.

    Everything is built and checked first (config, data, work dir, model,
    datasets, optimizer, checkpoints); a mistake there ends with one line
    and exit code 2. Training itself runs outside that handling.
    """
    args = parse_args(argv)
    import e3d_plugin  # noqa: F401  (bridges the stack, registers E3D)
    from e3d_plugin.launch import (LaunchError, build_runner, check_data,
                                   check_pretrained, check_resume,
                                   end_distributed, load_checkpoint_file,
                                   load_config, name_unreadable_videos,
                                   prepare_work_dir, run_or_report,
                                   setup_distributed)
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg = merge_args(cfg, args)
        check_data(cfg, ('train', ) if args.no_validate else
                   ('train', 'val'))
        check_pretrained(cfg)
        prepare_work_dir(cfg.work_dir)
        setup_distributed(cfg, args.launcher)
        name_unreadable_videos()
        runner = build_runner(cfg, 'train')
        resume_from = _resume_file(cfg)
        if resume_from is not None:
            check_resume(runner, resume_from, (
                'resume' if not args.resume else '--resume' if
                args.resume != 'auto' else '--resume (the latest checkpoint, '
                f"named in {osp.join(cfg.work_dir, 'last_checkpoint')})"))
        elif cfg.get('load_from'):
            load_checkpoint_file(cfg.load_from, 'load_from')
    except LaunchError as e:
        end_distributed()
        print(f'error: {e}', file=sys.stderr)
        return 2
    return run_or_report(runner.train)


if __name__ == '__main__':
    sys.exit(main())
