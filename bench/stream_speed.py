"""Streaming cost of a causal E3D: milliseconds per new frame against the
whole-clip time divided by the clip length, and the state's size, in
PyTorch and in onnxruntime.

    python bench/stream_speed.py [--arch E3D-S] [--frames 13] [--size 160]
        [--chunk 1] [--rounds 10] [--device cpu|cuda] [--threads N]
        [--runtime torch|onnxruntime|both]

Each round times, one after the other (so that a load swing hits all): the
causal backbone on a whole clip of ``--frames`` frames, and the same clip
fed ``--chunk`` frames at a time, the stream having run for a clip already
(steady state); with ``onnxruntime`` the same pair as exported ONNX graphs
(the whole backbone, and one streaming step with its state tensors as
explicit inputs and outputs), run by onnxruntime. Reported per runtime:
whole-clip ms per frame, streaming ms per new frame, their ratio per round
(median, min..max; the target is at most 1.3), and the state's size; the
streamed outputs are checked against the whole clip's. Eval mode, batch 1,
fp32, random weights with random norm scales and shifts.
"""
import copy
import os.path as osp
import sys
import tempfile
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _args import (MAX_ROUNDS, bounded_int, check_device,  # noqa: E402
                   check_voxels, fail)
from e3d_plugin.launch import OneLineArgumentParser  # noqa: E402

RUNTIMES = ('torch', 'onnxruntime', 'both')


def parse_args(argv=None):
    """Command-line arguments (sizes bounded: a bad one is one line)."""
    from e3d_plugin import PRESETS
    parser = OneLineArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='E3D-S', choices=sorted(PRESETS))
    parser.add_argument('--frames', type=bounded_int(1, 1024), default=13)
    parser.add_argument('--size', type=bounded_int(1, 1024), default=160)
    parser.add_argument('--chunk', type=bounded_int(1, 1024), default=1)
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=bounded_int(0, 1024), default=0,
                        help='threads of both runtimes (0: their default)')
    parser.add_argument('--runtime', choices=RUNTIMES, default='both',
                        help='onnxruntime needs pip install -e ".[deploy]" '
                        '(default both: torch, and onnxruntime if installed)')
    return parser.parse_args(argv)


def randomize_norms(model, seed=0):
    """Norm scales in [0.5, 1.5] and shifts around 0, so that residual
    branches (whose last norm starts at zero) carry signal."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(
                    torch.rand(m.weight.shape, generator=generator) + .5)
                m.bias.copy_(
                    torch.randn(m.bias.shape, generator=generator) * .1)


def torch_runners(model, clip, args):
    """``(whole, stream, diff, warm_state)``: callables timing PyTorch, the
    max abs diff of streamed vs whole-clip outputs, and the state after a
    clip."""
    import torch
    cuda = args.device.startswith('cuda')

    def run_stream(state):
        feats = []
        with torch.no_grad():
            for start in range(0, args.frames, args.chunk):
                out, state = model.stream_step(
                    clip[:, :, start:start + args.chunk], state)
                feats.append(out)
        if cuda:
            torch.cuda.synchronize()
        return feats, state

    def whole():
        with torch.no_grad():
            out = model(clip)
        if cuda:
            torch.cuda.synchronize()
        return out

    # from a fresh start; the state it leaves is the steady state (buffers
    # full) the timed stream starts from
    feats, warm_state = run_stream(model.init_stream(1))
    diff = float((torch.cat(feats, 2) - whole()).abs().max())

    def stream():
        run_stream(warm_state)

    return whole, stream, diff, warm_state


def ort_runners(model, clip, args, tmp):
    """The same pair in onnxruntime: the backbone exported for the whole
    clip and one streaming step of ``--chunk`` frames."""
    import numpy as np
    import torch

    from e3d_plugin.deploy import StreamStepModule, ort_session
    model = copy.deepcopy(model).cpu()  # the PyTorch runs keep their device
    clip = clip.cpu()
    size = tuple(clip.shape[3:])
    state = model.init_stream(1, size)
    keys = list(state)
    whole_path = osp.join(tmp, 'whole.onnx')
    step_path = osp.join(tmp, 'step.onnx')
    names = [f'state.{k}' for k in keys]
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on shape checks and Python values
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (clip, ), whole_path, input_names=['clip'],
                          output_names=['feats'], opset_version=17,
                          do_constant_folding=True, dynamo=False)
        torch.onnx.export(
            StreamStepModule(model, keys).eval(),
            (clip[:, :, :args.chunk], ) + tuple(state[k] for k in keys),
            step_path, input_names=['frames'] + names,
            output_names=['feats'] + [f'next.{k}' for k in keys],
            opset_version=17, do_constant_folding=True, dynamo=False)
    whole_session = ort_session(whole_path, args.threads)
    step_session = ort_session(step_path, args.threads)
    frames = clip.numpy()
    start_state = [state[k].numpy() for k in keys]

    def run_stream(values):
        outs = []
        for start in range(0, args.frames, args.chunk):
            feed = {'frames': frames[:, :, start:start + args.chunk]}
            feed.update(zip(names, values))
            out = step_session.run(None, feed)
            outs.append(out[0])
            values = out[1:]
        return np.concatenate(outs, 2), values

    def whole():
        return whole_session.run(None, {'clip': frames})[0]

    streamed, warm = run_stream(start_state)
    diff = float(np.abs(streamed - whole()).max())

    def stream():
        run_stream(warm)

    return whole, stream, diff


def main(argv=None):
    """Run the benchmark and print the figures."""
    args = parse_args(argv)
    import torch

    import e3d_plugin  # noqa: F401
    from e3d_plugin.deploy import state_nbytes, summarize
    from e3d_plugin.models import E3D
    try:
        check_device(args.device)
        check_voxels(f'a clip of {args.frames}x{args.size}x{args.size}',
                     args.frames * args.size**2)
    except ValueError as e:
        return fail(e)
    if args.frames % args.chunk:
        print(f'error: --frames {args.frames} is not a multiple of --chunk '
              f'{args.chunk}', file=sys.stderr)
        return 2
    runtimes = ['torch', 'onnxruntime'] if args.runtime == 'both' else [
        args.runtime]
    if 'onnxruntime' in runtimes:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            if args.runtime == 'onnxruntime':
                print('error: --runtime onnxruntime needs pip install -e '
                      '".[deploy]"', file=sys.stderr)
                return 2
            print('note: onnxruntime is not installed (pip install -e '
                  '".[deploy]"): PyTorch only')
            runtimes.remove('onnxruntime')
        if args.device != 'cpu' and 'onnxruntime' in runtimes:
            print('note: onnxruntime runs on the CPU here (CPU provider)')
    if args.threads:
        torch.set_num_threads(args.threads)
    model = E3D(arch=args.arch, causal=True)
    randomize_norms(model)
    model = model.to(args.device).eval()
    torch.manual_seed(0)
    clip = torch.randn(1, 3, args.frames, args.size, args.size,
                       device=args.device)
    runners = {}
    diffs = {}
    try:
        whole, stream, diffs['torch'], warm_state = torch_runners(
            model, clip, args)
    except RuntimeError as e:  # a clip the network cannot take
        lines = [line for line in str(e).splitlines() if line.strip()]
        return fail(f'{args.arch} cannot take a clip of {args.frames}x'
                    f'{args.size}x{args.size}: '
                    f'{lines[-1] if lines else type(e).__name__}')
    if 'torch' in runtimes:
        runners['torch'] = (whole, stream)
    with tempfile.TemporaryDirectory() as tmp:
        if 'onnxruntime' in runtimes:
            whole, stream, diffs['onnxruntime'] = ort_runners(
                model, clip, args, tmp)
            runners['onnxruntime'] = (whole, stream)
        for _ in range(2):
            for pair in runners.values():
                for run in pair:
                    run()
        times = {name: ([], []) for name in runners}
        for _ in range(args.rounds):
            for name, pair in runners.items():
                for run, bucket in zip(pair, times[name]):
                    begin = time.perf_counter()
                    run()
                    bucket.append(
                        (time.perf_counter() - begin) * 1e3 / args.frames)
    print(f'{args.arch} causal, {args.frames}x{args.size}x{args.size}, '
          f'chunk {args.chunk}, device {args.device}, torch '
          f'{torch.__version__}, threads {args.threads or "default"}, '
          f'{args.rounds} alternating rounds')
    for name, (per_whole, per_stream) in times.items():
        ratio = [s / w for s, w in zip(per_stream, per_whole)]
        w, s, r = (summarize(per_whole), summarize(per_stream),
                   summarize(ratio))
        print(f"[{name}] whole clip / T: {w['median']:.2f} ms per frame "
              f"({w['min']:.2f}..{w['max']:.2f}); streaming: "
              f"{s['median']:.2f} ms per new frame "
              f"({s['min']:.2f}..{s['max']:.2f})")
        print(f"[{name}] ratio streaming / (whole / T) per round: "
              f"{r['median']:.2f} ({r['min']:.2f}..{r['max']:.2f}); target "
              f"<= 1.3; stream vs whole clip max abs diff "
              f"{diffs[name]:.2g}")
    if len(times) == 2:
        t_stream, o_stream = times['torch'][1], times['onnxruntime'][1]
        ratio = summarize([o / t for o, t in zip(o_stream, t_stream)])
        print(f"onnxruntime / PyTorch streaming time per round: "
              f"{ratio['median']:.2f} ({ratio['min']:.2f}..{ratio['max']:.2f})")
    print(f'state: {len(warm_state)} tensors, '
          f'{state_nbytes(warm_state) / 1024:.1f} KB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
