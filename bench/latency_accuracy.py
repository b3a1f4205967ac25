"""How far the per-unit latency table's prediction is from measured latency.

    python bench/latency_accuracy.py [--device cpu] [--threads 2] [--batch 1]
        [--rounds 3] [--random 3] [--seed 0] [--table FILE]
        [--networks E3D-XS:8x64 E3D-S:13x160 E3D-M:16x224 ...]

For each network (presets at their clip sizes, plus ``--random`` structures
sampled from the E3D-M search space at 16x224) and each of ``--rounds``
rounds:

* **predicted**: the sum over the network's units of the
  :class:`~e3d_plugin.nas.latency.LatencyTable` entries, each unit timed
  alone. Every round times the units afresh into an empty table, so a round's
  prediction and measurement are taken minutes apart at most; with
  ``--table FILE`` the first prediction comes from that file (e.g. the table
  a search filled) and is only timed where the file lacks a unit.
* **measured**: the whole :class:`~e3d_plugin.models.E3D` backbone timed end
  to end in steady state (inference mode, at least 3 warm-up runs and 200
  ms, median of at least 10 samples).

It prints both, the error ``(predicted - measured) / measured`` per round and
its median, and at the end the median and largest absolute error over all
networks. Nothing is asserted.
"""
import os
import os.path as osp
import random
import statistics
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _args import (MAX_ROUNDS, OneLineParser, bounded_int,  # noqa: E402
                   check_device, check_voxels, fail)

DEFAULT_NETWORKS = ('E3D-XS:8x64', 'E3D-S:13x160', 'E3D-M:16x224',
                    'E3D-L:16x312')


#: The LatencyTable timing arguments --timing takes, with their bounds.
TIMING = dict(warmup=(0, 1000), warmup_ms=(0, 60000), repeat=(1, 1000),
              min_sample_ms=(0, 60000))


def parse_network(text):
    """``NAME:TxS`` -> (name, frames, size); ``ValueError`` naming the
    item when it is not that, or a size is out of 1..1024."""
    name, _, clip = text.partition(':')
    frames, _, size = clip.partition('x')
    try:
        frames, size = int(frames), int(size)
    except ValueError:
        raise ValueError(f'--networks {text!r}: give NAME:TxS, e.g. '
                         'E3D-XS:8x64') from None
    if not name or not 1 <= frames <= 1024 or not 1 <= size <= 1024:
        raise ValueError(f'--networks {text!r}: give NAME:TxS with T and S '
                         'in 1..1024, e.g. E3D-XS:8x64')
    return name, frames, size


def parse_timing(pairs):
    """``--timing KEY=VALUE`` items as LatencyTable arguments."""
    import math
    timing = {}
    for pair in pairs:
        key, _, value = pair.partition('=')
        if key not in TIMING:
            raise ValueError(f'--timing {pair!r}: give KEY=VALUE with KEY '
                             f"one of {', '.join(TIMING)}")
        low, high = TIMING[key]
        try:
            number = float(value) if key.endswith('_ms') else int(value)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or \
                not low <= number <= high:
            raise ValueError(f'--timing {key} must be a number in '
                             f'{low}..{high}, got {value!r}')
        timing[key] = number
    return timing


def check_table(path):
    """``ValueError`` unless ``path`` is missing (a new table) or holds an
    E3D latency table: the bench adds units to it, so another file is not
    to be touched."""
    import json

    from e3d_plugin.nas.latency.table import TABLE_FORMAT
    if not osp.exists(path):
        return
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"--table '{path}' is not an E3D latency table "
                         f'({type(e).__name__}); give a table a search '
                         'wrote, or a new file name') from None
    if not isinstance(data, dict) or data.get('format') != TABLE_FORMAT:
        raise ValueError(f"--table '{path}' is not an E3D latency table; "
                         'give a table a search wrote, or a new file name')


def main(argv=None):
    """Time the networks and print the comparison; return the exit code."""
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=bounded_int(1, 1024), default=2)
    parser.add_argument('--batch', type=bounded_int(1, 1024), default=1)
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=3)
    parser.add_argument('--random', type=bounded_int(0, 1000), default=3,
                        help='structures sampled from the E3D-M space')
    parser.add_argument('--seed', type=bounded_int(0, 2**32 - 1), default=0)
    parser.add_argument('--table', help='use this table for round 1')
    parser.add_argument('--timing', nargs='*', default=[],
                        metavar='KEY=VALUE',
                        help='LatencyTable timing arguments (warmup, '
                        'warmup_ms, repeat, min_sample_ms)')
    parser.add_argument('--networks', nargs='*',
                        default=list(DEFAULT_NETWORKS))
    args = parser.parse_args(argv)

    import torch

    import e3d_plugin  # noqa: F401  (compat patches)
    from e3d_plugin.launch import LaunchError, check_output_path
    from e3d_plugin.nas import E3DSearchSpace
    from e3d_plugin.nas.latency import LatencyError
    from e3d_plugin.structure import load_structure

    try:
        check_device(args.device)
        timing = parse_timing(args.timing)
        networks = []
        for text in args.networks:
            name, frames, size = parse_network(text)
            check_voxels(f'--networks {text} at --batch {args.batch}',
                         args.batch * frames * size**2)
            try:
                structure = load_structure(name)
            except (ValueError, TypeError, OSError) as e:
                raise ValueError(f'--networks {text!r}: {e}') from None
            networks.append((name, structure, frames, size))
        if args.random:
            check_voxels(f'--random at 16x224 and --batch {args.batch}',
                         args.batch * 16 * 224**2)
        if not networks and not args.random:
            raise ValueError('nothing to time: give --networks or --random')
        if args.table is not None:
            # read, and written with the units it lacks
            check_output_path(args.table, '--table')
            check_table(args.table)
    except (ValueError, LaunchError) as e:
        return fail(e)
    torch.set_num_threads(args.threads)
    space = E3DSearchSpace(image_size=224, frames=16, max_depth=6)
    rng = random.Random(args.seed)
    template = load_structure('E3D-M')
    for index in range(args.random):
        networks.append((f'random-{index}', space.sample(template, rng), 16,
                         224))

    try:
        return compare(args, networks, timing)
    except LatencyError as e:
        return fail(e)


def compare(args, networks, timing):
    """Predict and measure each network, round by round; print."""
    import torch

    from e3d_plugin.cost import compute_cost
    from e3d_plugin.nas import LatencyTable
    from e3d_plugin.nas.latency import structure_units, time_network
    probe = LatencyTable(device=args.device, batch_size=args.batch,
                         num_threads=args.threads, table_file=osp.join(
                             tempfile.gettempdir(), 'e3d-probe.json'),
                         **timing)
    print(f"device {args.device} ({probe.settings['device_name']}), "
          f'{args.threads} threads, batch {args.batch}, torch '
          f'{torch.__version__}, timing warmup {probe.warmup} runs / '
          f'{probe.warmup_ms:g} ms, median of {probe.repeat} samples of >= '
          f'{probe.min_sample_ms:g} ms; load average '
          f'{os.getloadavg()[0]:.2f}')
    print(f"{'network':<10}{'clip':>9}{'GFLOPs':>8}{'units':>6}"
          f"{'predicted ms':>24}{'measured ms':>24}{'error %':>22}"
          f"{'median':>8}")
    errors = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for name, structure, frames, size in networks:
            predicted, measured = [], []
            for round_ in range(args.rounds):
                table_file = (args.table if args.table and round_ == 0 else
                              osp.join(folder, f'{name}-{round_}.json'))
                table = LatencyTable(device=args.device,
                                     batch_size=args.batch,
                                     num_threads=args.threads,
                                     table_file=table_file, **timing)
                predicted.append(table.predict(structure, size, frames))
                measured.append(time_network(structure, table, size,
                                             frames))
            round_errors = [100 * (p - m) / m
                            for p, m in zip(predicted, measured)]
            median = statistics.median(round_errors)
            errors.append(median)
            units = len({key for key, _ in structure_units(
                structure, size, frames)})
            gflops = compute_cost(structure, size, frames).flops / 1e9
            print(f'{name:<10}{f"{frames}x{size}":>9}{gflops:>8.3f}'
                  f'{units:>6}'
                  f"{' / '.join(f'{v:.1f}' for v in predicted):>24}"
                  f"{' / '.join(f'{v:.1f}' for v in measured):>24}"
                  f"{' / '.join(f'{v:+.1f}' for v in round_errors):>22}"
                  f'{median:>+8.1f}', flush=True)
    absolute = [abs(e) for e in errors]
    print(f'median |error| {statistics.median(absolute):.1f} %, largest '
          f'{max(absolute):.1f} % over {len(errors)} networks '
          f'({time.perf_counter() - started:.0f} s; load average now '
          f'{os.getloadavg()[0]:.2f})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
