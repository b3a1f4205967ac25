"""Microseconds per cost evaluation and per STEntr-Score of the E3D presets.

The evolutionary search calls ``compute_cost`` and the score once per
candidate, so their per-call time bounds how many candidates a search can
afford. Each figure is the median over ``--repeat`` timeit runs of
``--number`` calls; the spread (min..max) shows noise from other processes.

Usage::

    python bench/cost_speed.py [--number 20000] [--repeat 7]
"""
import argparse
import os
import os.path as osp
import platform
import statistics
import sys
import timeit

# Run as a script from the repository root or from bench/.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from e3d_plugin import compute_cost, get_preset  # noqa: E402
from e3d_plugin.nas import STEntrScore  # noqa: E402
from e3d_plugin.presets import PRESET_CLIPS  # noqa: E402

#: The target stated for the search's inner loop.
TARGET_US = 50.0
#: The published presets, at the clip sizes they were searched for.
PUBLISHED = ('E3D-S', 'E3D-M', 'E3D-L')


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--number', type=int, default=20000,
                        help='calls per timeit run')
    parser.add_argument('--repeat', type=int, default=7,
                        help='timeit runs; the median is reported')
    return parser.parse_args(argv)


def time_call(func, number, repeat):
    """Median, min and max microseconds per call of ``func()``."""
    func()  # first call fills caches (e.g. the score's alpha memo)
    runs = timeit.repeat(func, number=number, repeat=repeat)
    per_call = [run / number * 1e6 for run in runs]
    return statistics.median(per_call), min(per_call), max(per_call)


def main(argv=None):
    """Time ``compute_cost`` and ``STEntrScore`` on every preset."""
    args = parse_args(argv)
    import torch  # only for the version line; the timed code never uses it
    print(f'python {platform.python_version()}, torch {torch.__version__}, '
          f'{os.cpu_count()} CPUs, number={args.number}, '
          f'repeat={args.repeat}')
    header = f'{"what":<14}{"preset":<8}{"clip":>9}{"median us":>11}' \
             f'{"min..max us":>16}   result'
    print(header)
    print('-' * len(header))
    worst = 0.0
    for name in PUBLISHED:
        frames, size = PRESET_CLIPS[name]
        structure = get_preset(name)
        clip = f'{frames}x{size}'

        def cost(structure=structure, size=size, frames=frames):
            """One cost evaluation, as the search does it."""
            return compute_cost(structure, size, frames)

        median, low, high = time_call(cost, args.number, args.repeat)
        worst = max(worst, median)
        result = cost()
        print(f'{"compute_cost":<14}{name:<8}{clip:>9}{median:>11.2f}'
              f'{f"{low:.2f}..{high:.2f}":>16}   '
              f'{result.flops / 1e9:.3f} GFLOPs, '
              f'{result.params / 1e6:.3f} M params, {result.layers} layers')

        # One score object per clip size, as a search builds it once.
        score = STEntrScore(image_size=size, frames=frames)

        def entropy(structure=structure, score=score):
            """One STEntr-Score evaluation."""
            return score(structure)

        median, low, high = time_call(entropy, args.number, args.repeat)
        print(f'{"STEntrScore":<14}{name:<8}{clip:>9}{median:>11.2f}'
              f'{f"{low:.2f}..{high:.2f}":>16}   score {entropy():.4f}')
    verdict = 'meets' if worst < TARGET_US else 'MISSES'
    print(f'\nslowest compute_cost median: {worst:.2f} us -> {verdict} the '
          f'target of < {TARGET_US:.0f} us per cost evaluation')
    return 0 if worst < TARGET_US else 1


if __name__ == '__main__':
    sys.exit(main())
