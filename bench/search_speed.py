"""Wall time and quality of full searches, start-up included.

    python bench/search_speed.py [--configs s m l] [--seeds 0 1 2 3 4]
        [--num-candidates 100000]

Runs ``python tools/search.py configs/search_e3d_<x>.py --seed N`` in a
fresh process for each config and seed and prints, per run, the wall time of
the whole process (imports included), the search loop's own time, the
candidates evaluated per second and the best STEntr-Score against the
published structure's.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PUBLISHED = {'s': 202.8559146389, 'm': 204.9404058703, 'l': 411.8081687491}


def main():
    """Run the searches and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='+', default=['s', 'm', 'l'])
    parser.add_argument('--seeds', nargs='+', type=int,
                        default=[0, 1, 2, 3, 4])
    parser.add_argument('--num-candidates', type=int, default=100000)
    args = parser.parse_args()
    print(f"{'config':<8}{'seed':>5}{'wall s':>9}{'search s':>10}"
          f"{'cand/s':>10}{'best score':>13}{'published':>13}{'GFLOPs':>9}"
          f"{'layers':>8}")
    for name in args.configs:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as work_dir:
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, 'tools/search.py',
                     f'configs/search_e3d_{name}.py', '--work-dir', work_dir,
                     '--seed', str(seed), '--no-progress', '--cfg-options',
                     f'search.num_candidates={args.num_candidates}'],
                    cwd=ROOT, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return 1
                summary = json.load(
                    open(osp.join(work_dir, 'search_summary.json')))
            rate = summary['num_evaluated'] / summary['elapsed_s']
            print(f'{name.upper():<8}{seed:>5}{wall:>9.2f}'
                  f"{summary['elapsed_s']:>10.2f}{rate:>10.0f}"
                  f"{summary['best_score']:>13.4f}{PUBLISHED[name]:>13.4f}"
                  f"{summary['best_flops'] / 1e9:>9.3f}"
                  f"{summary['best_layers']:>8}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
