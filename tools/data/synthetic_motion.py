"""Generate the built-in synthetic motion video datasets.

    python tools/data/synthetic_motion.py --out data/synthetic_motion \
        [--num-videos 1000 --size 64 --frames 32 --seed 0 --fps 16]
    python tools/data/synthetic_motion.py --preset hard --out data/motion_hard

Writes MP4 videos and mmaction2 ``VideoDataset`` annotation lists
(``train_list.txt``, ``val_list.txt``) plus ``classes.txt``; the same seed
gives the same dataset. ``--preset basic`` (default) has ten classes (see
:mod:`e3d_plugin.datasets.synthetic_motion`), ``--preset hard`` twenty
classes among distractors (see :mod:`e3d_plugin.datasets.motion_hard`); in
both one frame alone cannot tell the classes apart. Unset sizes take the
preset's defaults (basic: 1000 videos, 64px, 32 frames; hard: 2000 videos,
40px, 32 frames).

The settings are recorded in ``dataset.json``. A folder that already holds
a dataset is left alone: a rerun with the same settings writes nothing
(``already holds this dataset``; an unfinished one is finished), another
preset, seed, size, frame count, frame rate or number of videos is refused,
as is a dataset without ``dataset.json`` (of an older generator), unless
``--overwrite`` asks to replace it. A folder of other files is refused.
Bad input (including sizes over 100000 videos, 1024 pixels, 4096 frames,
2**26 pixels per video or 1000 fps) ends in one line ``error: ...`` and
exit code 2 before anything is written.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def main(argv=None):
    """Entry point; returns the exit code."""
    parser = _Parser(description='Generate the synthetic motion dataset')
    parser.add_argument('--preset', default='basic',
                        choices=('basic', 'hard'),
                        help='which classes to generate')
    parser.add_argument('--out', default=None,
                        help='output folder (default: data/synthetic_motion '
                        'or data/motion_hard)')
    parser.add_argument('--num-videos', type=int, default=None,
                        help='videos in all, 20%% go to val (default: the '
                        "preset's, 1000 or 2000)")
    parser.add_argument('--size', type=int, default=None,
                        help='frame height and width in pixels (default: '
                        "the preset's, 64 or 40)")
    parser.add_argument('--frames', type=int, default=None,
                        help='frames per video (default 32)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--fps', type=int, default=16,
                        help='frame rate written in the files')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='replace a dataset of other settings in --out (its videos, '
        'lists and classes; nothing else)')
    args = parser.parse_args(argv)

    from e3d_plugin.datasets.synthetic_motion import (SyntheticMotionError,
                                                      generate)

    def progress(done, total):
        if done % 50 == 0 or done == total:
            print(f'\r{done}/{total} videos', end='', file=sys.stderr,
                  flush=True)

    if args.out is not None and not args.out:
        print('error: --out must not be empty (omit it for the default '
              'folder)', file=sys.stderr)
        return 2
    out = args.out or {'basic': 'data/synthetic_motion',
                       'hard': 'data/motion_hard'}[args.preset]
    try:
        summary = generate(out, num_videos=args.num_videos, size=args.size,
                           frames=args.frames, seed=args.seed, fps=args.fps,
                           progress=progress, preset=args.preset,
                           overwrite=args.overwrite)
    except SyntheticMotionError as e:
        message = str(e).replace('overwrite=True (--overwrite)',
                                 '--overwrite')
        if message.startswith("out '"):
            message = '--' + message
        print(f'error: {message}', file=sys.stderr)
        return 2
    counts = summary['counts']
    if not summary['written']:
        print(f"{out} already holds this dataset ({sum(counts['train'])} "
              f"train and {sum(counts['val'])} val videos, seed "
              f"{summary['seed']}): nothing written")
        return 0
    print(file=sys.stderr)
    print(f"wrote {sum(counts['train'])} train and {sum(counts['val'])} val "
          f"videos ({len(summary['classes'])} classes, {summary['frames']} "
          f"frames of {summary['size']}x{summary['size']}) to {out} in "
          f"{summary['elapsed_s']:.1f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
