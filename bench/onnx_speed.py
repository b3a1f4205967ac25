"""ONNX export of E3D recognizers: parity with PyTorch and onnxruntime vs
PyTorch latency, timed alternately round by round.

    python bench/onnx_speed.py [--models E3D-S,E3D-M,E3D-L]
        [--structure NAME=best_structure.json ...] [--clip T H W]
        [--rounds 10] [--device cpu|cuda] [--threads N]

Each model is a ``Recognizer3D`` (E3D backbone, ``X3DHead``, 400 classes)
with random weights and norm statistics measured on a random clip
(:func:`e3d_plugin.deploy.randomize_weights`), exported for its preset clip
(``--clip`` for all). Parity: max abs difference of the logits over three
random clips, and whether the top-1 agrees. Latency: one clip per call; in
every round onnxruntime and PyTorch run one after the other, so a load
swing hits both; the ratio onnxruntime / PyTorch is reported per round
(median, min..max). ``--device cuda`` runs PyTorch on the GPU (TF32 off for
the parity) and onnxruntime with its CUDA provider when it has one, else on
the CPU (said in the output).
"""
import os.path as osp
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _args import MAX_ROUNDS, bounded_int, check_device, fail  # noqa: E402
from e3d_plugin.launch import OneLineArgumentParser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments (sizes bounded: a bad one is one line)."""
    parser = OneLineArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='E3D-S,E3D-M,E3D-L',
                        help='comma-separated presets')
    parser.add_argument(
        '--structure', action='append', default=[],
        metavar='NAME=FILE', help='also a structure file (e.g. a search\'s '
        'best_structure.json), at --clip or the preset clip of NAME\'s '
        'size if NAME is a preset, else 8x64x64')
    parser.add_argument('--clip', type=bounded_int(1, 4096), nargs=3,
                        metavar=('T', 'H', 'W'))
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=bounded_int(0, 1024), default=0,
                        help='threads of both runtimes (0: their default)')
    return parser.parse_args(argv)


def build(backbone, out_channels):
    """A recognizer with ``backbone`` and an X3D head."""
    from mmaction.registry import MODELS
    return MODELS.build(
        dict(
            type='Recognizer3D',
            backbone=dict(type='E3D', **backbone),
            cls_head=dict(type='X3DHead', in_channels=out_channels,
                          num_classes=400, average_clips='prob'),
            data_preprocessor=dict(
                type='ActionDataPreprocessor', mean=[114.75] * 3,
                std=[57.38] * 3, format_shape='NCTHW')))


def session_for(path, device, threads):
    """onnxruntime session (CUDA provider for cuda where it exists)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ['CPUExecutionProvider']
    if device.startswith('cuda') and (
            'CUDAExecutionProvider' in ort.get_available_providers()):
        providers.insert(0, 'CUDAExecutionProvider')
    session = ort.InferenceSession(path, options, providers=providers)
    return session, session.get_providers()[0]


def measure(name, model, clip, args, tmp):
    """Parity and latency figures of one model."""
    import torch

    from e3d_plugin.deploy import (RecognizerLogits, export_onnx,
                                   interleaved_latency, random_clips,
                                   randomize_weights, summarize)
    randomize_weights(model, clip, seed=0)
    path = osp.join(tmp, name.replace('/', '_') + '.onnx')
    start = time.perf_counter()
    export_onnx(model, path, clip)
    export_s = time.perf_counter() - start
    session, provider = session_for(path, args.device, args.threads)
    wrapper = RecognizerLogits(model.to(args.device)).eval()
    clips = random_clips(clip, count=3, seed=1)
    worst, largest, same = 0.0, 0.0, True
    with torch.no_grad():
        for x in clips:
            expected = wrapper(x.to(args.device)).float().cpu()
            got = torch.from_numpy(
                session.run(['logits'], {'clip': x.numpy()})[0])
            worst = max(worst, float((got - expected).abs().max()))
            largest = max(largest, float(expected.abs().max()))
            same &= bool(torch.equal(got.argmax(1), expected.argmax(1)))
    x = clips[0]
    x_device = x.to(args.device)
    feed = {'clip': x.numpy()}

    def run_torch():
        with torch.no_grad():
            wrapper(x_device)
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()

    times = interleaved_latency(
        dict(onnxruntime=lambda: session.run(['logits'], feed),
             pytorch=run_torch), args.rounds, warmup=2)
    ratio = [a / b for a, b in zip(times['onnxruntime'], times['pytorch'])]
    return dict(name=name, clip=clip, export_s=export_s, max_diff=worst,
                max_logit=largest, same_top1=same, provider=provider,
                ort=summarize(times['onnxruntime']),
                torch=summarize(times['pytorch']), ratio=summarize(ratio))


def main(argv=None):
    """Run the benchmark and print a table."""
    args = parse_args(argv)
    import torch

    import e3d_plugin  # noqa: F401  (registers E3D)
    from e3d_plugin import PRESETS, get_preset, load_structure
    from e3d_plugin.deploy import (DeployError, check_input_file,
                                   check_input_size)
    from e3d_plugin.presets import PRESET_CLIPS
    from e3d_plugin.structure import StructureError
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    try:
        check_device(args.device)
    except ValueError as e:
        return fail(e)
    if args.device.startswith('cuda'):
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = []
    for name in [m.strip() for m in args.models.split(',') if m.strip()]:
        if name not in PRESETS:
            return fail(f'--models: unknown preset {name!r}; choose from '
                        f'{", ".join(PRESETS)}')
        frames, size = PRESET_CLIPS[name]
        jobs.append((name, dict(arch=name), get_preset(name).out_channels,
                     tuple(args.clip or (frames, size, size))))
    for item in args.structure:
        name, _, path = item.partition('=')
        if not name or not path:
            return fail(f'--structure {item!r}: give NAME=FILE of an '
                        'existing structure file')
        try:
            check_input_file(path, 'structure file')
            structure = load_structure(path)
        except (DeployError, StructureError, ValueError, TypeError,
                OSError) as e:
            lines = [line for line in str(e).splitlines() if line.strip()]
            return fail(f'--structure {name}: ' + (
                lines[-1] if lines else type(e).__name__))
        jobs.append((name, dict(structure_file=path), structure.out_channels,
                     tuple(args.clip or (8, 64, 64))))
    if not jobs:
        return fail('nothing to measure: give --models or --structure')
    for name, _, _, clip in jobs:
        try:
            check_input_size(clip)
        except DeployError as e:
            return fail(f'{name}: {e}')
    print(f'device {args.device}, torch {torch.__version__}, threads '
          f'{torch.get_num_threads()}, {args.rounds} alternating rounds')
    print('model | clip T H W | export s | max abs diff | max abs logit | '
          'same top-1 | onnxruntime ms (provider) | PyTorch ms | '
          'ratio ort/torch per round')
    with tempfile.TemporaryDirectory() as tmp:
        for name, backbone, channels, clip in jobs:
            model = build(backbone, channels)
            try:
                r = measure(name, model, clip, args, tmp)
            except DeployError as e:  # a clip the network cannot take
                return fail(f'{name}: {e}')
            o, t, q = r['ort'], r['torch'], r['ratio']
            print(f"{name} | {clip[0]} {clip[1]} {clip[2]} | "
                  f"{r['export_s']:.1f} | {r['max_diff']:.2g} | "
                  f"{r['max_logit']:.2g} | {r['same_top1']} | "
                  f"{o['median']:.1f} ({o['min']:.1f}..{o['max']:.1f}, "
                  f"{r['provider'].replace('ExecutionProvider', '')}) | "
                  f"{t['median']:.1f} ({t['min']:.1f}..{t['max']:.1f}) | "
                  f"{q['median']:.2f} ({q['min']:.2f}..{q['max']:.2f})",
                  flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
