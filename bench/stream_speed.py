"""Streaming cost of a causal E3D: milliseconds per new frame against the
whole-clip time divided by the clip length, and the state's size.

    python bench/stream_speed.py [--arch E3D-S] [--frames 13] [--size 160]
        [--chunk 1] [--rounds 10] [--device cpu|cuda] [--threads N]

Each round times, one after the other (so that a load swing hits both):
the causal backbone on a whole clip of ``--frames`` frames, and the same
clip fed to ``stream_step`` ``--chunk`` frames at a time, the stream having
run for a clip already (steady state). Reported: whole-clip ms per frame,
streaming ms per new frame, their ratio per round (median, min..max; the
target is at most 1.3), and the state's size. Eval mode, batch 1, fp32.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='E3D-S')
    parser.add_argument('--frames', type=int, default=13)
    parser.add_argument('--size', type=int, default=160)
    parser.add_argument('--chunk', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the benchmark and print the figures."""
    args = parse_args(argv)
    import torch

    import e3d_plugin  # noqa: F401
    from e3d_plugin.deploy import state_nbytes, summarize
    from e3d_plugin.models import E3D
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('error: --device cuda: CUDA is not available', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith('cuda')
    model = E3D(arch=args.arch, causal=True).to(args.device).eval()
    torch.manual_seed(0)
    clip = torch.randn(1, 3, args.frames, args.size, args.size,
                       device=args.device)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def whole():
        model(clip)

    with torch.no_grad():
        # a stream that has seen one clip: buffers full, as in steady state
        _, warm_state = model.stream_step(clip, model.init_stream(1))

        def stream():
            state = warm_state
            for start in range(0, args.frames, args.chunk):
                _, state = model.stream_step(
                    clip[:, :, start:start + args.chunk], state)
            return state

        for _ in range(2):
            whole()
            stream()
        sync()
        per_whole, per_stream = [], []
        for _ in range(args.rounds):
            begin = time.perf_counter()
            whole()
            sync()
            per_whole.append(
                (time.perf_counter() - begin) * 1e3 / args.frames)
            begin = time.perf_counter()
            state = stream()
            sync()
            per_stream.append(
                (time.perf_counter() - begin) * 1e3 / args.frames)
        # streamed outputs equal the whole clip's (a check of the figures)
        feats, _ = model.stream_step(clip, model.init_stream(1))
        diff = float((feats - model(clip)).abs().max())
    ratio = [s / w for s, w in zip(per_stream, per_whole)]
    w, s, r = summarize(per_whole), summarize(per_stream), summarize(ratio)
    print(f'{args.arch} causal, {args.frames}x{args.size}x{args.size}, '
          f'chunk {args.chunk}, device {args.device}, torch '
          f'{torch.__version__}, threads {torch.get_num_threads()}, '
          f'{args.rounds} alternating rounds')
    print(f"whole clip / T: {w['median']:.2f} ms per frame "
          f"({w['min']:.2f}..{w['max']:.2f})")
    print(f"streaming: {s['median']:.2f} ms per new frame "
          f"({s['min']:.2f}..{s['max']:.2f})")
    print(f"ratio streaming / (whole / T) per round: {r['median']:.2f} "
          f"({r['min']:.2f}..{r['max']:.2f}); target <= 1.3")
    print(f'state: {len(state)} tensors, {state_nbytes(state) / 1024:.1f} '
          f'KB; stream vs whole clip max abs diff {diff:.2g}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
