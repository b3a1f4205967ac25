"""Streaming cost of a causal E3D: milliseconds per new frame against the
whole-clip time divided by the clip length, and the state's size, in
PyTorch and in onnxruntime.

    python bench/stream_speed.py [--arch E3D-S] [--frames 13] [--size 160]
        [--chunk 1] [--batch 1] [--rounds 10] [--device cpu|cuda]
        [--threads N] [--runtime torch|onnxruntime|both] [--json FILE]

Each round times, one after the other (so that a load swing hits all): the
causal backbone on a whole clip of ``--frames`` frames, the same clip fed
``--chunk`` frames at a time to the functional ``stream_step`` (a new state
dict each step), and in PyTorch the same stream through
:class:`~e3d_plugin.models.StaticStream` (static input, state and feature
buffers updated in place; eager on the CPU, one CUDA graph replayed per
step on cuda), each stream having run for a clip already (steady state);
with ``onnxruntime`` the whole clip and the functional stream as exported
ONNX graphs (the whole backbone, and one streaming step with its state
tensors as explicit inputs and outputs), run by onnxruntime. ``--batch N``
streams N videos as one batch (each step takes a chunk of every video).

Reported per runtime: whole-clip ms per frame, streaming ms per new frame
(of the batch, i.e. per step of one frame, and per video: divided by N),
their ratio per round (median, min..max; the target is at most 1.3), the
static stream's figures and its ratio to the functional stream, and the
state's size; every stream's outputs are checked against the whole clip's.
Eval mode, fp32, random weights with random norm scales and shifts.
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
                   check_output_option, check_voxels, fail,
                   write_json)
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
    parser.add_argument('--batch', type=bounded_int(1, 1024), default=1,
                        help='videos streamed together as one batch')
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=bounded_int(0, 1024), default=0,
                        help='threads of both runtimes (0: their default)')
    parser.add_argument('--runtime', choices=RUNTIMES, default='both',
                        help='onnxruntime needs pip install -e ".[deploy]" '
                        '(default both: torch, and onnxruntime if installed)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the figures to FILE as JSON')
    args = parser.parse_args(argv)
    check_output_option(parser, args.json)
    return args


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
    batch = clip.shape[0]

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
    feats, warm_state = run_stream(model.init_stream(batch))
    diff = float((torch.cat(feats, 2) - whole()).abs().max())

    def stream():
        run_stream(warm_state)

    return whole, stream, diff, warm_state


def static_runner(model, clip, args):
    """``(stream, diff, stepper)``: a callable timing the clip streamed
    through a :class:`StaticStream` (a CUDA graph on cuda), and the max
    abs diff of its outputs vs the whole clip's from a fresh start."""
    import torch

    from e3d_plugin.models import StaticStream
    cuda = args.device.startswith('cuda')
    stepper = StaticStream(model, clip.shape[0], tuple(clip.shape[3:]),
                           chunk=args.chunk)
    chunks = [clip[:, :, start:start + args.chunk]
              for start in range(0, args.frames, args.chunk)]

    def run_stream(keep=False):
        feats = [stepper.step(chunk, copy=keep) for chunk in chunks]
        if cuda:
            torch.cuda.synchronize()
        return feats

    with torch.no_grad():
        whole = model(clip)
    # from a fresh start; the state it leaves is the steady state
    diff = float((torch.cat(run_stream(keep=True), 2) - whole).abs().max())
    return run_stream, diff, stepper


def ort_runners(model, clip, args, tmp):
    """The same pair in onnxruntime: the backbone exported for the whole
    clip and one streaming step of ``--chunk`` frames."""
    import numpy as np
    import torch

    from e3d_plugin.deploy import StreamStepModule, ort_session
    model = copy.deepcopy(model).cpu()  # the PyTorch runs keep their device
    clip = clip.cpu()
    size = tuple(clip.shape[3:])
    state = model.init_stream(clip.shape[0], size)
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
        clips = 'a clip' if args.batch == 1 else (
            f'a batch of {args.batch} clips')
        check_voxels(f'{clips} of {args.frames}x{args.size}x{args.size}',
                     args.batch * args.frames * args.size**2)
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
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size,
                       device=args.device)
    runners = {}
    diffs = {}
    try:
        whole, stream, diffs['torch'], warm_state = torch_runners(
            model, clip, args)
        if 'torch' in runtimes:
            static, diffs['static'], stepper = static_runner(
                model, clip, args)
    except RuntimeError as e:  # a clip the network cannot take
        lines = [line for line in str(e).splitlines() if line.strip()]
        return fail(f'{args.arch} cannot take a clip of {args.frames}x'
                    f'{args.size}x{args.size}: '
                    f'{lines[-1] if lines else type(e).__name__}')
    if 'torch' in runtimes:
        runners['torch'] = dict(whole=whole, stream=stream, static=static)
    with tempfile.TemporaryDirectory() as tmp:
        if 'onnxruntime' in runtimes:
            whole, stream, diffs['onnxruntime'] = ort_runners(
                model, clip, args, tmp)
            runners['onnxruntime'] = dict(whole=whole, stream=stream)
        for _ in range(2):
            for runs in runners.values():
                for run in runs.values():
                    run()
        times = {name: {label: [] for label in runs}
                 for name, runs in runners.items()}
        for _ in range(args.rounds):
            for name, runs in runners.items():
                for label, run in runs.items():
                    begin = time.perf_counter()
                    run()
                    times[name][label].append(
                        (time.perf_counter() - begin) * 1e3 / args.frames)
    print(f'{args.arch} causal, {args.frames}x{args.size}x{args.size}, '
          f'chunk {args.chunk}, batch {args.batch}, device {args.device}, '
          f'torch {torch.__version__}, threads {args.threads or "default"}, '
          f'{args.rounds} alternating rounds')
    figures = dict(arch=args.arch, frames=args.frames, size=args.size,
                   chunk=args.chunk, batch=args.batch, device=args.device,
                   torch=torch.__version__, rounds=args.rounds,
                   state_bytes=state_nbytes(warm_state), runtimes={})
    for name, per in times.items():
        ratio = [s / w for s, w in zip(per['stream'], per['whole'])]
        entry = figures['runtimes'][name] = dict(
            ms_per_frame={label: summarize(values)
                          for label, values in per.items()},
            stream_ratio=summarize(ratio), max_abs_diff=diffs[name])
        w, s, r = (summarize(per['whole']), summarize(per['stream']),
                   summarize(ratio))
        print(f"[{name}] whole clip / T: {w['median']:.2f} ms per frame "
              f"({w['min']:.2f}..{w['max']:.2f}); streaming: "
              f"{s['median']:.2f} ms per new frame "
              f"({s['min']:.2f}..{s['max']:.2f})")
        print(f"[{name}] ratio streaming / (whole / T) per round: "
              f"{r['median']:.2f} ({r['min']:.2f}..{r['max']:.2f}); target "
              f"<= 1.3; stream vs whole clip max abs diff "
              f"{diffs[name]:.2g}")
        if 'static' in per:
            kind = 'CUDA graph' if stepper.graph else 'eager'
            st = summarize(per['static'])
            r = summarize([a / b for a, b in
                           zip(per['static'], per['whole'])])
            f = summarize([a / b for a, b in
                           zip(per['static'], per['stream'])])
            entry.update(static_kind=kind, static_ratio=r,
                         static_vs_functional=f,
                         static_max_abs_diff=diffs['static'])
            print(f"[{name}] static stream ({kind}): {st['median']:.2f} ms "
                  f"per new frame ({st['min']:.2f}..{st['max']:.2f}); ratio "
                  f"static / (whole / T) per round: {r['median']:.2f} "
                  f"({r['min']:.2f}..{r['max']:.2f}); target <= 1.3; "
                  f"static vs whole clip max abs diff {diffs['static']:.2g}")
            print(f"[{name}] static / functional streaming time per round: "
                  f"{f['median']:.2f} ({f['min']:.2f}..{f['max']:.2f})")
        medians = ', '.join(
            f"{label} {summarize(values)['median'] / args.batch:.3f}"
            for label, values in per.items())
        print(f"[{name}] per video (batch {args.batch}), ms per frame: "
              f"{medians}")
    if len(times) == 2:
        t_stream = times['torch']['stream']
        o_stream = times['onnxruntime']['stream']
        ratio = summarize([o / t for o, t in zip(o_stream, t_stream)])
        print(f"onnxruntime / PyTorch streaming time per round: "
              f"{ratio['median']:.2f} ({ratio['min']:.2f}..{ratio['max']:.2f})")
    print(f'state: {len(warm_state)} tensors, '
          f'{state_nbytes(warm_state) / 1024:.1f} KB')
    if args.json:
        write_json(args.json, figures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
