"""Search time per 100,000 candidates: this tree against a baseline revision,
interleaved in one run.

    python bench/search_speed.py [--baseline ebf64a4] [--config m]
        [--rounds 5] [--seed 0] [--num-candidates 100000]

The baseline revision is exported with ``git archive`` into a temporary
folder. Each round runs ``tools/search.py configs/search_e3d_<config>.py``
once from the baseline and once from this tree, each in a fresh process
(their order alternates from round to round, so a load swing or a warm cache
favours neither), with the config's own settings (checkpoints included) and
the same seed. The time is the search's own (``elapsed_s`` of
``search_summary.json``: the search loop with its checkpoints, no start-up)
scaled to 100,000 candidates. Printed: per round both times, the ratio
this tree / baseline (below 1: this tree is faster), the best scores (equal
when both revisions search the same way), then the median ratio with its
range and the spread (standard deviation) of the ratios. On a machine
shared with other jobs, trust the ratio of a round over the raw times.

``--baseline none`` times this tree only (one run per round).
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tarfile
import tempfile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _args import (MAX_ROUNDS, OneLineParser, bounded_int, fail,  # noqa: E402
                   git_revision)


class SearchFailed(RuntimeError):
    """A search run of one tree ended with an error."""


def export_revision(revision, folder):
    """Write the files of ``revision`` (git) into ``folder``."""
    archive = osp.join(folder, 'tree.tar')
    subprocess.run(['git', 'archive', '--format=tar', '-o', archive,
                    revision], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(osp.join(folder, 'tree'), filter='data')
    os.remove(archive)
    return osp.join(folder, 'tree')


def time_search(tree, config, seed, num_candidates):
    """Run the search of ``tree`` in a fresh process; return (seconds per
    100,000 candidates, best score)."""
    with tempfile.TemporaryDirectory() as work_dir:
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
        proc = subprocess.run(
            [sys.executable, 'tools/search.py',
             f'configs/search_e3d_{config}.py', '--work-dir', work_dir,
             '--seed', str(seed), '--no-progress', '--cfg-options',
             f'search.num_candidates={num_candidates}'],
            cwd=tree, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines()
                     if line.strip()]
            raise SearchFailed(
                f'the search of {tree} failed (exit code '
                f"{proc.returncode}): {lines[-1] if lines else 'no message'}")
        with open(osp.join(work_dir, 'search_summary.json')) as f:
            summary = json.load(f)
    per_100k = summary['elapsed_s'] * 1e5 / summary['num_evaluated']
    return per_100k, summary['best_score']


def main(argv=None):
    """Run the rounds and print the table."""
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument('--baseline', default='ebf64a4',
                        help="git revision to compare with ('none': none)")
    parser.add_argument('--config', default='m',
                        help='search config: configs/search_e3d_<config>.py')
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=5)
    parser.add_argument('--seed', type=bounded_int(0, 2**32 - 1), default=0)
    parser.add_argument('--num-candidates', type=bounded_int(1, 10**7),
                        default=100000)
    args = parser.parse_args(argv)
    config = osp.join('configs', f'search_e3d_{args.config}.py')
    if '/' in args.config or not osp.isfile(osp.join(ROOT, config)):
        return fail(f'--config {args.config!r}: no {config} in this tree')
    if args.baseline != 'none':
        try:
            git_revision(ROOT, args.baseline)
        except ValueError as e:
            return fail(e)
    try:
        return compare(args)
    except SearchFailed as e:
        return fail(e)


def compare(args):
    """Run the rounds and print the table."""
    with tempfile.TemporaryDirectory() as folder:
        runs = [('this tree', ROOT)]
        if args.baseline != 'none':
            tree = export_revision(args.baseline, folder)
            if not osp.isfile(osp.join(tree, 'configs',
                                       f'search_e3d_{args.config}.py')):
                raise SearchFailed(
                    f'--config {args.config!r}: the baseline '
                    f'{args.baseline} has no configs/search_e3d_'
                    f'{args.config}.py')
            runs.insert(0, (args.baseline, tree))
        print(f'config {args.config}, {args.num_candidates} candidates, seed '
              f'{args.seed}; search seconds per 100,000 candidates')
        header = f"{'round':>5}" + ''.join(f'{name:>14}' for name, _ in runs)
        if len(runs) == 2:
            header += f"{'ratio':>8}{'best (base)':>14}{'best (this)':>14}"
        print(header)
        ratios, times = [], {name: [] for name, _ in runs}
        for index in range(args.rounds):
            order = runs if index % 2 == 0 else runs[::-1]
            measured = {name: time_search(tree, args.config, args.seed,
                                          args.num_candidates)
                        for name, tree in order}
            line = f'{index + 1:>5}'
            for name, _ in runs:
                times[name].append(measured[name][0])
                line += f'{measured[name][0]:>14.3f}'
            if len(runs) == 2:
                base, this = (measured[name] for name, _ in runs)
                ratios.append(this[0] / base[0])
                line += f'{ratios[-1]:>8.3f}{base[1]:>14.4f}{this[1]:>14.4f}'
            print(line, flush=True)
        line = f"{'med':>5}" + ''.join(
            f'{statistics.median(times[name]):>14.3f}' for name, _ in runs)
        print(line)
        if ratios:
            spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
            print(f'ratio this tree / {args.baseline}: median '
                  f'{statistics.median(ratios):.3f}, range {min(ratios):.3f}'
                  f' to {max(ratios):.3f}, spread (sd) {spread:.3f} over '
                  f'{len(ratios)} rounds')
    return 0


if __name__ == '__main__':
    sys.exit(main())
