"""Export an E3D recognizer to ONNX and check it with onnxruntime.

    python tools/deploy/export_onnx.py CONFIG [CHECKPOINT] --out model.onnx
        [--clip T H W] [--dynamic-batch] [--opset N] [--video PATH]
        [--stream-out step.onnx] [--rounds R] [--cfg-options k=v ...]

The graph is the whole recognizer for a raw-pixel ``NCTHW`` clip (the data
preprocessor's normalisation, the backbone, the head), ending in the class
scores (logits). After export the tool compares onnxruntime with PyTorch on
two random clips and on a decoded video (``--video``, or the first video of
the config's validation list when it exists): max abs difference of the
logits at most ``--atol`` (1e-4) and the same top-1, else exit code 1; then
it prints onnxruntime vs PyTorch CPU latency, timed alternately.

Without CHECKPOINT the weights are random (``--seed``), with norm statistics
measured on a random clip, so that the check compares logits of order 1.

``--stream-out`` (a causal backbone only) also exports one streaming step
(``--chunk`` frames in, class scores after each, the state tensors as
explicit inputs and outputs) and checks it with onnxruntime over the video
(its first 256 sampled frames at most) against PyTorch streaming.

Bad input ends in one line ``error: ...`` and exit code 2 before anything
is written: an output that is a directory, cannot be created, is an input
(the config, the checkpoint, the video, the structure file) or the other
output, or is an existing file that is not ``.onnx``; ``--batch`` over
256, ``--rounds`` over 1000, ``--chunk`` over 256 or over the video's
frames, a ``--seed`` outside ``0..2**32-1``, an ``--atol`` that is not a
finite number >= 0, an input of more than ``MAX_VOXELS`` (2**23) voxels.
An ONNX file is written under a temporary name and renamed when complete,
so a failed export leaves an existing file as it was.

Needs the deploy extra: ``pip install -e ".[deploy]"`` (onnx, onnxruntime).
"""
import os.path as osp
import sys

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments."""
    from e3d_plugin.launch import CfgOptionsAction
    parser = _Parser(description='Export an E3D recognizer to ONNX and '
                     'check it with onnxruntime')
    parser.add_argument('config', help='an E3D mmaction2 config')
    parser.add_argument(
        'checkpoint', nargs='?', help='checkpoint (default: random weights)')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument(
        '--clip', type=int, nargs=3, metavar=('T', 'H', 'W'),
        help="input clip (default: the config's validation clip)")
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the exported input')
    parser.add_argument(
        '--dynamic-batch', action='store_true',
        help='let the batch dimension vary in the ONNX graph')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset (11..20)')
    parser.add_argument(
        '--video', help='video for the check (default: the first video of '
        "the config's validation list, when it exists)")
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest allowed abs difference of the logits')
    parser.add_argument('--rounds', type=int, default=10,
                        help='timed rounds of the latency comparison')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random weights and clips')
    parser.add_argument(
        '--stream-out', help='also export the streaming step (causal '
        'backbones) to this .onnx file and check it over the video')
    parser.add_argument('--chunk', type=int, default=1,
                        help='frames per streaming step (--stream-out)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def first_val_video(cfg):
    """Path of the first video of the config's validation list, or None."""
    dataset = (cfg.get('val_dataloader') or {}).get('dataset') or {}
    ann_file = dataset.get('ann_file')
    prefix = (dataset.get('data_prefix') or {}).get('video')
    if not isinstance(ann_file, str) or not isinstance(
            prefix, str) or not osp.isfile(ann_file):
        return None
    try:
        with open(ann_file, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    path = osp.join(prefix, line.split()[0])
                    return path if osp.isfile(path) else None
    except (OSError, UnicodeDecodeError):  # not a list to take it from
        return None
    return None


def fit_clip(video, frames):
    """The first ``frames`` frames of ``video`` (looped if it is shorter)."""
    import torch
    while video.shape[2] < frames:
        video = torch.cat([video, video], 2)
    return video[:, :, :frames]


def _report(name, result, atol):
    ok = result['max_abs_diff'] <= atol and result['same_top1']
    print(f"parity ({name}, {result['clips']} clip(s)): max abs diff "
          f"{result['max_abs_diff']:.3g} (max |logit| "
          f"{result['max_abs_logit']:.3g}), same top-1: "
          f"{result['same_top1']} -> {'ok' if ok else 'FAILED'}")
    return ok


def _parity(session, model, clips):
    import torch

    from e3d_plugin.deploy import RecognizerLogits, parity
    result = parity(session, model, clips)
    with torch.no_grad():
        result['max_abs_logit'] = max(
            float(RecognizerLogits(model)(c).abs().max()) for c in clips)
    return result


#: Largest --batch and --rounds.
MAX_BATCH = 256
MAX_ROUNDS = 1000
#: The video checks read at most this many frames (after the sampling step)
#: of the video; --chunk is at most this too.
MAX_VIDEO_FRAMES = 256
MAX_SEED = 2**32 - 1


def _shown(value):
    """``value`` for a message, a huge number cut to 20 digits."""
    text = str(value)
    return text if len(text) <= 24 else text[:20] + '...'


def check_args(args):
    """Refuse settings out of range before anything is built."""
    import math

    from e3d_plugin.deploy import DeployError, check_clip, check_input_size
    for name, value, low, high in (
            ('batch', args.batch, 1, MAX_BATCH),
            ('rounds', args.rounds, 1, MAX_ROUNDS),
            ('chunk', args.chunk, 1, MAX_VIDEO_FRAMES),
            ('seed', args.seed, 0, MAX_SEED)):
        if not low <= value <= high:
            raise DeployError(
                f'--{name} must be in {low}..{high}, got {_shown(value)}')
    if not 11 <= args.opset <= 20:
        raise DeployError(
            f'opset must be an int in 11..20, got {_shown(args.opset)}')
    if not math.isfinite(args.atol) or args.atol < 0:
        raise DeployError(
            f'--atol must be a finite number >= 0, got {args.atol}')
    if args.clip is not None:
        check_input_size(check_clip(tuple(args.clip)), args.batch)


def check_paths(args, model=None, video_path=None):
    """Refuse missing inputs and outputs that cannot be written or would
    overwrite an input (the config, the checkpoint, the video, the
    structure file, one another); with ``model`` also those its config
    names."""
    from e3d_plugin.deploy import (DeployError, check_input_file,
                                   check_output_file)
    from e3d_plugin.launch import same_file
    if args.checkpoint is not None:
        check_input_file(args.checkpoint, 'checkpoint')
    if args.video is not None:
        check_input_file(args.video, 'video')
    inputs = [('config', args.config), ('checkpoint', args.checkpoint),
              ('video', args.video), ('video', video_path)]
    if model is not None:
        structure = model.cfg.model.backbone.get('structure_file')
        if isinstance(structure, str) and structure:
            if not osp.isabs(structure) and not osp.exists(structure) and \
                    model.cfg.filename:
                structure = osp.join(osp.dirname(model.cfg.filename),
                                     structure)
            inputs.append(('structure file', structure))
    # an existing file that is not .onnx is refused once every input is
    # known (its name says more when it is one of them)
    foreign_ok = model is None
    check_output_file(args.out, '--out', inputs, foreign_ok)
    if args.stream_out is not None:
        check_output_file(args.stream_out, '--stream-out', inputs,
                          foreign_ok)
        if same_file(args.out, args.stream_out):
            raise DeployError(
                f"--out and --stream-out both name '{args.out}'; give two "
                'files')


def run(args):
    """Export, check and time; return the exit code."""
    import torch

    from e3d_plugin.deploy import (DeployError, RecognizerLogits,
                                   build_recognizer, check_clip,
                                   export_onnx, export_stream_onnx,
                                   onnx_stream_video, ort_session,
                                   ort_vs_torch_latency, random_clips,
                                   randomize_weights, read_video, recipe_clip,
                                   state_nbytes, stream_video, summarize,
                                   try_forward)
    check_args(args)
    check_paths(args)
    torch.manual_seed(args.seed)
    model = build_recognizer(
        args.config, args.checkpoint, args.cfg_options,
        streaming=bool(args.stream_out))
    cfg = model.cfg
    video_path = args.video or first_val_video(cfg)
    check_paths(args, model, video_path)
    if args.clip is not None:
        clip, interval = check_clip(tuple(args.clip)), None
        try:
            interval = recipe_clip(cfg)[1]
        except DeployError:
            interval = 1
    else:
        clip, interval = recipe_clip(cfg)
    try_forward(RecognizerLogits(model), clip, args.batch)
    if args.stream_out and not video_path:
        raise DeployError('--stream-out checks over a video: give --video')
    video = None
    if video_path:
        # everything is read before anything is written
        video = read_video(
            cfg, video_path, interval,
            max_frames=max(clip[0], MAX_VIDEO_FRAMES)
            if args.stream_out else clip[0])
        if args.stream_out and args.chunk > video.shape[2]:
            raise DeployError(
                f'--chunk {args.chunk} is more than the {video.shape[2]} '
                f"frame(s) of '{video_path}' (every {interval}); give a "
                'smaller --chunk or a longer --video')
    if args.checkpoint is None:
        print(f'no checkpoint: random weights (seed {args.seed})')
        randomize_weights(model, clip, args.seed)
    export_onnx(model, args.out, clip, args.batch, args.dynamic_batch,
                args.opset)
    print(f'exported {args.out} for clips of {args.batch}x3x'
          f'{clip[0]}x{clip[1]}x{clip[2]} (N C T H W)'
          + (', dynamic batch' if args.dynamic_batch else ''))
    session = ort_session(args.out)
    ok = _report('random clips', _parity(
        session, model, random_clips(clip, args.batch, 2, args.seed)),
        args.atol)
    if video is not None:
        clip_of_video = fit_clip(video, clip[0])
        if tuple(clip_of_video.shape[3:]) != tuple(clip[1:]):
            print(f'video check skipped: {video_path} gives '
                  f'{tuple(clip_of_video.shape[3:])} frames, the export '
                  f'takes {tuple(clip[1:])}')
        else:
            ok &= _report(f'video {video_path}', _parity(
                session, model,
                [clip_of_video.expand(args.batch, -1, -1, -1, -1)]),
                args.atol)
    else:
        print('video check skipped: give --video (the config names no '
              'existing validation video)')
    latency = ort_vs_torch_latency(
        session, model, random_clips(clip, args.batch, 1, args.seed)[0],
        rounds=args.rounds)
    ort_ms = summarize(latency['times']['onnxruntime'])
    torch_ms = summarize(latency['times']['pytorch'])
    ratio = summarize(latency['ratio'])
    print(f'latency per clip, {args.rounds} alternating rounds (median, '
          f"min..max): onnxruntime {ort_ms['median']:.1f} ms "
          f"({ort_ms['min']:.1f}..{ort_ms['max']:.1f}), PyTorch "
          f"{torch_ms['median']:.1f} ms ({torch_ms['min']:.1f}.."
          f"{torch_ms['max']:.1f}); onnxruntime / PyTorch per round: "
          f"median {ratio['median']:.2f} ({ratio['min']:.2f}.."
          f"{ratio['max']:.2f})")
    if args.stream_out:
        frames = video[:, :, :video.shape[2] // args.chunk * args.chunk]
        start = export_stream_onnx(model, args.stream_out,
                                   tuple(frames.shape[3:]), args.chunk)
        got = onnx_stream_video(ort_session(args.stream_out), start, frames,
                                args.chunk)
        expected, _ = stream_video(model, frames, args.chunk)
        diff = float((got - expected).abs().max())
        same = bool(torch.equal(got.argmax(-1), expected.argmax(-1)))
        stream_ok = diff <= args.atol and same
        print(f'exported {args.stream_out}: one step of {args.chunk} '
              f'frame(s), {len(start)} state tensors '
              f'({state_nbytes(start) / 1024:.1f} KB); over '
              f'{frames.shape[2]} frames of {video_path}: max abs diff '
              f'{diff:.3g}, same top-1 after every frame: {same} -> '
              f"{'ok' if stream_ok else 'FAILED'}")
        ok &= stream_ok
    return 0 if ok else 1


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    import importlib.util
    for package in ('onnx', 'onnxruntime'):
        if importlib.util.find_spec(package) is None:
            print(f'error: {package} is missing; install the deploy extra: '
                  'pip install -e ".[deploy]"', file=sys.stderr)
            return 2
    import e3d_plugin  # noqa: F401  (bridges the stack, registers E3D)
    from e3d_plugin.deploy import DeployError
    try:
        return run(args)
    except DeployError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
