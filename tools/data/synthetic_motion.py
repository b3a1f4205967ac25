"""Generate the built-in synthetic motion video dataset.

    python tools/data/synthetic_motion.py --out data/synthetic_motion \
        [--num-videos 1000 --size 64 --frames 32 --seed 0 --fps 16]

Writes MP4 videos and mmaction2 ``VideoDataset`` annotation lists
(``train_list.txt``, ``val_list.txt``) plus ``classes.txt``; the same seed
gives the same dataset. See :mod:`e3d_plugin.datasets.synthetic_motion` for
the ten classes and why one frame alone cannot tell them apart.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def main(argv=None):
    """Entry point; returns the exit code."""
    parser = _Parser(description='Generate the synthetic motion dataset')
    parser.add_argument('--out', default='data/synthetic_motion',
                        help='output folder')
    parser.add_argument('--num-videos', type=int, default=1000,
                        help='videos in all (20%% go to val)')
    parser.add_argument('--size', type=int, default=64,
                        help='frame height and width in pixels')
    parser.add_argument('--frames', type=int, default=32,
                        help='frames per video')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--fps', type=int, default=16,
                        help='frame rate written in the files')
    args = parser.parse_args(argv)

    from e3d_plugin.datasets.synthetic_motion import (SyntheticMotionError,
                                                      generate)

    def progress(done, total):
        if done % 50 == 0 or done == total:
            print(f'\r{done}/{total} videos', end='', file=sys.stderr,
                  flush=True)

    try:
        summary = generate(args.out, num_videos=args.num_videos,
                           size=args.size, frames=args.frames, seed=args.seed,
                           fps=args.fps, progress=progress)
    except SyntheticMotionError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(file=sys.stderr)
    counts = summary['counts']
    print(f"wrote {sum(counts['train'])} train and {sum(counts['val'])} val "
          f"videos ({len(summary['classes'])} classes, {args.frames} frames "
          f"of {args.size}x{args.size}) to {args.out} in "
          f"{summary['elapsed_s']:.1f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
