"""Training-step throughput and peak memory of E3D-M vs X3D-M on this machine.

For each backbone, in its own subprocess (so that peak memory is per model):
build it in train mode, run ``--warmup`` untimed steps, then time ``--iters``
steps of forward + ``output.mean()`` backward on a random
``(batch, 3, frames, size, size)`` clip batch. Reported per model:

* clips/s: ``batch / step time`` (median step; min..max over the steps;
  the load average before and after shows whether other processes were
  competing for the CPU);
* peak MB: the process's peak resident set (``VmHWM`` of
  ``/proc/self/status``) and its growth over the resident set right after
  the imports, read before the FLOP count runs so that it covers training
  only;
* GFLOPs per clip (multiply-adds of conv + linear layers, batch 1):
  ``mmengine.analysis.FlopAnalyzer`` on the module in eval mode for both,
  and for E3D also :func:`e3d_plugin.compute_cost` from the structure alone;
* params (M) and GFLOPs/s processed: ``clips/s * GFLOPs/clip``.

The last line says whether E3D-M is no slower than X3D-M per FLOP, i.e.
whether its GFLOPs/s is at least X3D-M's.

Usage::

    python bench/backbone_speed.py [--frames 16 --size 112 --batch 4
        --iters 10 --warmup 3 --threads 2 --channels-last]
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Run as a script from the repository root or from bench/.
sys.path.insert(0, ROOT)
MODELS = ('E3D-M', 'X3D-M')
# Marks the worker's result line among anything else it prints.
RESULT_TAG = 'BACKBONE_SPEED_RESULT '


def parse_args(argv=None):
    """Command-line options (shared by the parent and the workers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=16)
    parser.add_argument('--size', type=int, default=112,
                        help='clip height and width')
    parser.add_argument('--batch', type=int, default=4,
                        help='clips per training step')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed training steps per model')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed training steps before timing')
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='torch intra-op threads')
    parser.add_argument('--channels-last', action='store_true',
                        help='model and input in torch.channels_last_3d')
    parser.add_argument('--no-mkldnn', action='store_true',
                        help='set torch.backends.mkldnn.enabled = False')
    parser.add_argument('--models', nargs='+', default=list(MODELS),
                        choices=MODELS, help='backbones to measure')
    parser.add_argument('--worker', choices=MODELS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def proc_status_kb(field):
    """A ``kB`` field of ``/proc/self/status`` (e.g. VmHWM), or None."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kb():
    """Peak resident set of this process in kB (VmHWM, else getrusage)."""
    peak = proc_status_kb('VmHWM')
    if peak is None:
        import resource

        # Linux reports ru_maxrss in kB.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak


def build_model(name):
    """The backbone ``name`` as mmaction2 configs build it.

    Weights keep PyTorch's default init: ``init_weights`` would only log a
    page per parameter, and the values do not change the work done.
    """
    if name == 'E3D-M':
        from e3d_plugin import E3D
        return E3D(arch='E3D-M')
    from mmaction.models.backbones import X3D

    # As in configs/recognition/x3d/x3d_m_16x5x1_facebook-kinetics400-rgb.py.
    return X3D(gamma_w=1, gamma_b=2.25, gamma_d=2.2)


def count_flops(model, frames, size):
    """Conv + linear multiply-adds of one clip by mmengine's FlopAnalyzer."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.randn(1, 3, frames, size, size))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_op = analyzer.by_operator()
    return by_op.get('conv', 0) + by_op.get('linear', 0)


def worker(args):
    """Measure one backbone; print its figures as one tagged JSON line."""
    import torch

    import e3d_plugin  # noqa: F401  (bridges the mmaction2 wheel's gaps)

    torch.set_num_threads(args.threads)
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    torch.manual_seed(0)
    base_kb = proc_status_kb('VmRSS') or 0

    model = build_model(args.worker)
    model.train()
    clips = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        clips = clips.contiguous(memory_format=torch.channels_last_3d)

    def step():
        """One training step without an optimizer: forward, backward."""
        model.zero_grad(set_to_none=True)
        model(clips).mean().backward()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    # Read before the FLOP count so that the peak is the training one.
    peak_kb = peak_rss_kb()

    flops = count_flops(model, args.frames, args.size)
    result = dict(
        model=args.worker,
        step_s=times,
        peak_mb=peak_kb / 1024,
        delta_mb=(peak_kb - base_kb) / 1024,
        params=sum(p.numel() for p in model.parameters()),
        flops=flops)
    if args.worker == 'E3D-M':
        from e3d_plugin import compute_cost
        result['cost_flops'] = compute_cost(model.structure, args.size,
                                            args.frames).flops
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_worker(name, argv):
    """Run one model's measurement in a fresh interpreter; return its dict."""
    cmd = [sys.executable, osp.abspath(__file__), '--worker', name] + argv
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    sys.stderr.write(proc.stdout + proc.stderr)
    raise RuntimeError(f'{name}: measurement failed (exit {proc.returncode})')


def summarise(result, batch):
    """Add clips/s (median, min, max) and GFLOPs/s to a worker's result."""
    times = result['step_s']
    result['clips_s'] = batch / statistics.median(times)
    result['clips_s_min'] = batch / max(times)
    result['clips_s_max'] = batch / min(times)
    # Quartiles resist the odd step slowed down by another process.
    if len(times) > 1:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1 = q3 = times[0]
    result['clips_s_q1'] = batch / q3
    result['clips_s_q3'] = batch / q1
    result['gflops'] = result['flops'] / 1e9
    result['gflops_s'] = result['clips_s'] * result['gflops']
    return result


def print_table(results, args, load):
    """The figures of every model, one row each."""
    import torch
    # The 1-minute load average decays slowly: "before" still counts recent
    # benchmark runs, "after" counts this one.
    print(f'load average (1 min): {load[0]:.2f} before, {load[1]:.2f} after; '
          f'torch {torch.__version__}, python {platform.python_version()}, '
          f'{os.cpu_count()} CPUs, threads={args.threads}, clip '
          f'{args.frames}x{args.size}x{args.size}, batch {args.batch}, '
          f'{args.iters} timed steps after {args.warmup} warm-up, '
          f'channels_last={args.channels_last}, '
          f'mkldnn={not args.no_mkldnn}')
    header = (f'{"model":<7}{"GFLOPs/clip":>12}{"params M":>10}'
              f'{"clips/s":>9}{"(min..max)":>14}{"ms/step":>9}'
              f'{"GFLOPs/s":>10}{"peak MB":>9}{"+MB":>8}')
    print(header)
    print('-' * len(header))
    for r in results:
        spread = f'{r["clips_s_min"]:.2f}..{r["clips_s_max"]:.2f}'
        print(f'{r["model"]:<7}{r["gflops"]:>12.3f}{r["params"] / 1e6:>10.3f}'
              f'{r["clips_s"]:>9.2f}{spread:>14}'
              f'{1e3 * statistics.median(r["step_s"]):>9.0f}'
              f'{r["gflops_s"]:>10.2f}{r["peak_mb"]:>9.0f}'
              f'{r["delta_mb"]:>8.0f}')
    print('clips/s: median step (min..max over steps); peak MB: VmHWM of the '
          "model's process; +MB: peak minus the RSS after imports")
    for r in results:
        if 'cost_flops' in r:
            same = 'matches' if r['cost_flops'] == r['flops'] else 'DIFFERS'
            print(f'{r["model"]}: compute_cost {r["cost_flops"] / 1e9:.6f} '
                  f'GFLOPs, FlopAnalyzer conv+linear {r["flops"] / 1e9:.6f} '
                  f'GFLOPs -> {same}')


def verdict(results):
    """One line: is E3D-M no slower than X3D-M per FLOP?"""
    by_name = {r['model']: r for r in results}
    if set(MODELS) - set(by_name):
        return 'verdict: needs both E3D-M and X3D-M'
    e3d, x3d = by_name['E3D-M'], by_name['X3D-M']
    ratio = e3d['gflops_s'] / x3d['gflops_s']
    # Pessimistic and optimistic ratios from the step-time quartiles.
    low = e3d['clips_s_q1'] * e3d['gflops'] / (
        x3d['clips_s_q3'] * x3d['gflops'])
    high = e3d['clips_s_q3'] * e3d['gflops'] / (
        x3d['clips_s_q1'] * x3d['gflops'])
    answer = 'YES' if ratio >= 1 else 'NO'
    if low < 1 <= high or high < 1 <= low:
        answer += ' (within noise)'
    return (f'verdict: E3D-M no slower than X3D-M per FLOP: {answer} '
            f'(E3D-M/X3D-M GFLOPs/s = {ratio:.2f} on medians, '
            f'{low:.2f}..{high:.2f} over the step-time quartiles)')


def main(argv=None):
    """Measure each model in a subprocess and print the comparison."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    # Workers get the same options, minus the model list.
    passed = [a for a in argv if a not in MODELS and a != '--models']
    load_before = os.getloadavg()[0]
    results = [
        summarise(run_worker(name, passed), args.batch)
        for name in args.models
    ]
    print_table(results, args, (load_before, os.getloadavg()[0]))
    print(verdict(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
