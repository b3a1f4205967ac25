"""Microseconds per cost evaluation, STEntr-Score and mutation: the search's
inner loop, alone or against another version of the code.

The evolutionary search calls ``space.mutate`` (and now and then
``space.crossover``), ``compute_cost`` and the score once per candidate, so
their per-call time bounds how many candidates a search can afford.

Usage::

    python bench/cost_speed.py [--number 20000] [--repeat 7]
    python bench/cost_speed.py --baseline REV_OR_DIR [--rounds 10]
        [--number 20000]

Alone, each figure is the median over ``--repeat`` timeit runs of
``--number`` calls; the spread (min..max) shows noise from other processes.

With ``--baseline`` (a git revision, e.g. ``HEAD~3``, or a folder holding
another copy of ``e3d_plugin``), two worker processes -- this tree's code
and the baseline's -- time each call in turn, round after round (one timeit
run of ``--number`` calls each, the order flipping every round, so a load
swing hits both alike; ``bench/_interleave.py``), and the table gives, per
call, both medians and the ratio ``this / baseline`` per round: its median,
quartiles and min..max, and a verdict only when the middle half of the
rounds lies on one side of 1. A ratio below 1 means this tree is faster.

The calls: ``compute_cost`` and ``STEntrScore`` on the published presets at
their clip sizes (repeated calls on one structure: memoised blocks answer);
``compute_cost`` of E3D-M at a new clip size every call (nothing memoised
answers); ``mutate`` and ``crossover+mutate`` in the E3D-M search space on a
pool of 64 sampled structures; and ``candidate``, one search step (mutate,
cost, score) on that pool, the figure that decides a search's speed.
"""
import argparse
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import timeit

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

#: The target stated for the search's inner loop.
TARGET_US = 50.0
#: The published presets, at the clip sizes they were searched for.
PUBLISHED = ('E3D-S', 'E3D-M', 'E3D-L')


def parse_args(argv=None):
    """Command-line options (counts bounded: a bad one is one line)."""
    from _args import MAX_ROUNDS, OneLineParser, bounded_int
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument('--number', type=bounded_int(1, 10**6),
                        default=20000, help='calls per timeit run')
    parser.add_argument('--repeat', type=bounded_int(1, 100), default=7,
                        help='timeit runs; the median is reported')
    parser.add_argument('--baseline',
                        help='git revision or folder to compare against')
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=10,
                        help='alternating rounds with --baseline')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_calls(root):
    """``[(name, detail, func)]``: the timed calls, with the package imported
    from ``root``."""
    sys.path.insert(0, root)
    import random

    import e3d_plugin
    from e3d_plugin import compute_cost, get_preset
    from e3d_plugin.nas import E3DSearchSpace, STEntrScore
    from e3d_plugin.presets import PRESET_CLIPS
    assert osp.dirname(osp.dirname(e3d_plugin.__file__)) == root, root

    calls = []
    for name in PUBLISHED:
        frames, size = PRESET_CLIPS[name]
        structure = get_preset(name)
        clip = f'{name} {frames}x{size}'

        def cost(structure=structure, size=size, frames=frames):
            return compute_cost(structure, size, frames)

        calls.append(('compute_cost', clip, cost))
        score = STEntrScore(image_size=size, frames=frames)

        def entropy(structure=structure, score=score):
            return score(structure)

        calls.append(('STEntrScore', clip, entropy))

    space = E3DSearchSpace(image_size=224, frames=16, max_depth=6)
    rng = random.Random(0)
    template = get_preset('E3D-M')
    pool = [space.sample(template, rng) for _ in range(64)]
    score = STEntrScore(image_size=224, frames=16)
    state = {'i': 0}

    def pick():
        state['i'] = (state['i'] + 1) & 63
        return pool[state['i']]

    def mutate():
        return space.mutate(pick(), rng)

    def cross():
        return space.mutate(space.crossover(pick(), pick(), rng), rng)

    def candidate():
        child = space.mutate(pick(), rng)
        compute_cost(child, 224, 16)
        return score(child)

    medium = get_preset('E3D-M')
    sizes = {'size': 224}

    def cost_new_clip():
        # a clip size never seen before: no memoised block can answer
        sizes['size'] += 1
        return compute_cost(medium, sizes['size'], 16)

    calls += [('compute_cost', 'E3D-M new clip size', cost_new_clip),
              ('mutate', 'E3D-M space', mutate),
              ('crossover+mutate', 'E3D-M space', cross),
              ('candidate', 'mutate+cost+score', candidate)]
    return calls


def time_once(func, number):
    """Microseconds per call of one timeit run of ``number`` calls."""
    return timeit.timeit(func, number=number) / number * 1e6


def worker(root, number):
    """Serve timings to the parent (:func:`_interleave.serve`): one timeit
    run of ``number`` calls of the call asked for, in microseconds per
    call."""
    from _interleave import serve
    calls = []

    def handle(request):
        if request['op'] == 'ready':
            calls.extend(make_calls(root))
            for _, _, func in calls:
                func()  # fill caches (e.g. the score's memo) before timing
            return dict(calls=[f'{n} | {d}' for n, d, _ in calls])
        return dict(us=time_once(calls[request['index']][2], number))

    return serve(handle)


def baseline_root(spec, folder):
    """The folder holding the baseline's ``e3d_plugin``: ``spec`` itself,
    or ``git archive spec`` unpacked into ``folder``."""
    if osp.isdir(osp.join(spec, 'e3d_plugin')):
        return osp.abspath(spec)
    from _args import git_revision
    try:
        git_revision(ROOT, spec)
    except ValueError:
        raise ValueError(f'--baseline {spec} is neither a folder holding '
                         'e3d_plugin nor a revision of this repository'
                         ) from None
    archive = subprocess.run(['git', 'archive', spec, 'e3d_plugin'],
                             cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        lines = archive.stderr.decode(errors='replace').strip().splitlines()
        raise ValueError(f'--baseline {spec}: git archive failed ('
                         f"{lines[-1] if lines else 'no message'})")
    subprocess.run(['tar', '-x', '-C', folder], input=archive.stdout,
                   check=True)
    return folder


def compare(args):
    """Alternate this tree and the baseline call by call, round by round;
    print the per-round ratios with their spread."""
    from _interleave import spread, start_workers, verdict, verdict_basis
    with tempfile.TemporaryDirectory() as folder:
        roots = {'this': ROOT, 'base': baseline_root(args.baseline, folder)}
        workers, ready = start_workers(
            list(roots), lambda name: [
                sys.executable, osp.abspath(__file__), '--worker',
                roots[name], '--number', str(args.number)])
        try:
            names = ready['this']['calls']
            if ready['base']['calls'] != names:
                sys.exit('error: the two trees time different calls')
            # times[side][call] over the rounds
            times = {side: [[] for _ in names] for side in workers}
            for round_ in range(args.rounds):
                order = ('this', 'base') if round_ % 2 == 0 else ('base',
                                                                  'this')
                for index in range(len(names)):
                    for side in order:
                        times[side][index].append(workers[side].request(
                            op='time', index=index)['us'])
        finally:
            for w in workers.values():
                w.close()
    print(f'this tree: {ROOT}\nbaseline:  {args.baseline}\n'
          f'{args.rounds} alternating rounds of {args.number} calls each; '
          f'load average {os.getloadavg()[0]:.2f}')
    header = (f'{"call":<34}{"this us":>9}{"base us":>9}{"ratio":>8}'
              f'{"IQR":>12}{"min..max":>12}   verdict')
    print(header)
    print('-' * len(header))
    for index, name in enumerate(names):
        mine, base = times['this'][index], times['base'][index]
        stats = spread([a / b for a, b in zip(mine, base)])
        side = verdict(stats)
        basis = verdict_basis(stats)[0]
        text = {'below': f'faster ({basis} below 1)',
                'above': f'SLOWER ({basis} above 1)',
                None: 'cannot tell'}[side]
        quartiles = f"{stats['q1']:.2f}..{stats['q3']:.2f}"
        extremes = f"{stats['min']:.2f}..{stats['max']:.2f}"
        print(f'{name:<34}{statistics.median(mine):>9.2f}'
              f'{statistics.median(base):>9.2f}{stats["median"]:>8.3f}'
              f'{quartiles:>12}{extremes:>12}   {text}')
    return 0


def main(argv=None):
    """Time the calls of this tree, or compare with ``--baseline``."""
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args.number)
    if args.baseline:
        from _args import fail
        try:
            return compare(args)
        except ValueError as e:
            return fail(e)
    calls = make_calls(ROOT)
    import torch  # only for the version line; the timed code never uses it
    print(f'python {platform.python_version()}, torch {torch.__version__}, '
          f'{os.cpu_count()} CPUs, number={args.number}, '
          f'repeat={args.repeat}')
    header = f'{"call":<18}{"on":<20}{"median us":>11}{"min..max us":>16}'
    print(header)
    print('-' * len(header))
    worst = 0.0
    for name, detail, func in calls:
        func()
        runs = [time_once(func, args.number) for _ in range(args.repeat)]
        median = statistics.median(runs)
        if name == 'compute_cost':
            worst = max(worst, median)
        print(f'{name:<18}{detail:<20}{median:>11.2f}'
              f'{f"{min(runs):.2f}..{max(runs):.2f}":>16}')
    verdict = 'meets' if worst < TARGET_US else 'MISSES'
    print(f'\nslowest compute_cost median: {worst:.2f} us -> {verdict} the '
          f'target of < {TARGET_US:.0f} us per cost evaluation')
    return 0 if worst < TARGET_US else 1


if __name__ == '__main__':
    sys.exit(main())
