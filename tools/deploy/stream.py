"""Classify a video frame by frame with a causal E3D recognizer.

    python tools/deploy/stream.py CONFIG CHECKPOINT VIDEO [--every K]
        [--chunk C] [--frame-interval N] [--topk K] [--label-map FILE]
        [--device cpu] [--compare-frames M] [--cfg-options k=v ...]

The video's frames (every ``--frame-interval``-th, by default the config's
sampling step, resized and cropped as the config's validation pipeline does)
are fed to ``recognizer.stream_step`` ``--chunk`` at a time; after every
``--every``-th frame the tool prints the top classes of the scores for all
frames so far. The config's backbone must be causal (``backbone.causal=True``,
e.g. ``configs/e3d/e3d_xs-causal_8x4x1_synthetic-motion.py``). Class names
come from ``--label-map`` (one per line) or the ``classes.txt`` beside the
config's annotation files, else class indices are printed. At the end: the
time per new frame, the state's size, and the last scores compared with the
recognizer run on the whole clip.

The video is decoded a block of frames at a time (16, or one chunk if
longer), so a long video is never held whole; only the whole-clip check
needs all its frames, and it is made for videos of at most
``--compare-frames`` frames (512 by default; 0 turns it off).

A ``--chunk`` longer than the video feeds the whole video in one step. Bad
input ends in one line ``error: ...`` and exit code 2: a missing or
unreadable config, checkpoint, video or label map (a directory, binary
text, more than 1 MB, another number of names than the model's classes), a
``--device`` other than ``cpu``, ``cuda`` or ``cuda:N`` of an existing GPU.
"""
import os.path as osp
import sys
import time

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


#: Longest video (frames taken) whose last scores are checked against the
#: recognizer run on the whole clip: that check holds the whole video.
COMPARE_FRAMES = 512


def parse_args(argv=None):
    """Command-line arguments."""
    from e3d_plugin.launch import CfgOptionsAction
    parser = _Parser(description='Classify a video frame by frame with a '
                     'causal E3D recognizer')
    parser.add_argument('config', help='config of a causal E3D recognizer')
    parser.add_argument('checkpoint', help='its trained checkpoint')
    parser.add_argument('video', help='a video file')
    parser.add_argument('--every', type=int, default=1,
                        help='print after every K-th frame')
    parser.add_argument('--chunk', type=int, default=1,
                        help='frames fed per streaming step')
    parser.add_argument(
        '--frame-interval', type=int,
        help="take every N-th video frame (default: the config's sampling "
        'step)')
    parser.add_argument('--topk', type=int, default=2,
                        help='classes printed per line')
    parser.add_argument('--label-map', help='class names, one per line')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument(
        '--compare-frames', type=int, default=COMPARE_FRAMES,
        help='check the last scores against the whole clip when the video '
        'gives at most this many frames (default: %(default)s; 0: never)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


#: Largest label map read (bytes): class names, one per line.
MAX_LABEL_MAP_BYTES = 1 << 20


def class_names(cfg, label_map, num_classes=None):
    """Class names from ``label_map`` or the dataset's ``classes.txt``;
    with ``num_classes``, a list of another length is refused."""
    from e3d_plugin.deploy import DeployError
    path = label_map
    if path is None:
        ann_file = ((cfg.get('val_dataloader') or {}).get('dataset')
                    or {}).get('ann_file')
        if isinstance(ann_file, str) and ann_file:
            candidate = osp.join(osp.dirname(ann_file), 'classes.txt')
            path = candidate if osp.isfile(candidate) else None
    if path is None:
        return None
    names = read_names(path)
    if num_classes is not None and len(names) != num_classes:
        raise DeployError(
            f"label map '{path}' names {len(names)} class(es), the model "
            f'has {num_classes}; give one name per class')
    return names


def read_names(path):
    """The non-empty lines of the label map ``path``: a readable UTF-8 text
    file of at most :data:`MAX_LABEL_MAP_BYTES`."""
    from e3d_plugin.deploy import DeployError, check_input_file
    check_input_file(path, 'label map')
    if osp.getsize(path) > MAX_LABEL_MAP_BYTES:
        raise DeployError(
            f"label map '{path}' is larger than {MAX_LABEL_MAP_BYTES >> 20} "
            'MB; give one class name per line')
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is None or '\x00' in text:
        raise DeployError(f"label map '{path}' is not UTF-8 text; give one "
                          'class name per line')
    return [line.strip() for line in text.splitlines() if line.strip()]


def run(args):
    """Stream the video and print; return the exit code."""
    import torch

    from e3d_plugin.deploy import (DeployError, RecognizerLogits, VideoFrames,
                                   build_recognizer, check_device,
                                   check_input_file, recipe_clip,
                                   state_nbytes)
    for name in ('every', 'chunk', 'topk'):
        if getattr(args, name) < 1:
            raise DeployError(f'--{name} must be >= 1')
    if args.frame_interval is not None and args.frame_interval < 1:
        raise DeployError('--frame-interval must be >= 1')
    if args.compare_frames < 0:
        raise DeployError('--compare-frames must be >= 0')
    check_input_file(args.checkpoint, 'checkpoint')
    check_input_file(args.video, 'video')
    if args.label_map is not None:
        read_names(args.label_map)
    check_device(args.device)
    model = build_recognizer(args.config, args.checkpoint, args.cfg_options,
                             device=args.device, streaming=True)
    cfg = model.cfg
    interval = args.frame_interval
    if interval is None:
        try:
            interval = recipe_clip(cfg)[1]
        except DeployError:
            interval = 1
    names = class_names(cfg, args.label_map,
                        getattr(model.cls_head, 'num_classes', None))
    video = VideoFrames(cfg, args.video, interval)
    total = len(video)
    # a chunk longer than the video is the whole video at once
    args.chunk = min(args.chunk, total)
    compare = total <= args.compare_frames
    kept = []  # the frames, for the whole-clip comparison
    state = model.init_stream(1)
    step_times = []
    scores = None
    with torch.no_grad():
        for start, chunk in video.chunks(args.chunk):
            if start == 0:
                print(f'{args.video}: {total} frames (every {interval}), '
                      f'{chunk.shape[3]}x{chunk.shape[4]}, streamed '
                      f'{args.chunk} at a time')
            if compare:
                kept.append(chunk)
            chunk = chunk.to(args.device)
            begin = time.perf_counter()
            out, state = model.stream_step(chunk, state)
            if args.device.startswith('cuda'):
                torch.cuda.synchronize()
            step_times.append((time.perf_counter() - begin, chunk.shape[2]))
            probs = out[0].float().softmax(-1).cpu()
            for offset in range(chunk.shape[2]):
                frame = start + offset + 1
                if frame % args.every and frame != total:
                    continue
                top = probs[offset].topk(min(args.topk, probs.shape[-1]))
                label = ', '.join(
                    f'{names[i] if names and i < len(names) else i} '
                    f'{p:.2f}' for p, i in zip(top.values.tolist(),
                                               top.indices.tolist()))
                print(f'frame {frame:4d} (video frame '
                      f'{(frame - 1) * interval:4d}): {label}')
            scores = out[0, -1]
        if compare:
            whole = RecognizerLogits(model)(
                torch.cat(kept, 2).to(args.device))[0]
    # the first step also allocates the state; leave it out of the time
    timed = step_times[1:] or step_times
    per_frame = sum(t for t, _ in timed) / sum(n for _, n in timed) * 1e3
    if compare:
        diff = float((scores - whole).abs().max())
        check = (f'last scores vs the whole clip of {total} frames: max abs '
                 f'diff {diff:.2g}')
    else:
        check = (f'the whole-clip check is skipped for more than '
                 f'{args.compare_frames} frames (--compare-frames)')
    print(f'{per_frame:.2f} ms per new frame (mean over steps after the '
          f'first), state {state_nbytes(state) / 1024:.1f} KB; {check}')
    return 0


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    import e3d_plugin  # noqa: F401  (bridges the stack, registers E3D)
    from e3d_plugin.deploy import DeployError
    try:
        return run(args)
    except DeployError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
