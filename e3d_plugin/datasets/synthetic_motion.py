"""A small generated video dataset whose classes need time to tell apart.

Every video shows one textured object on a textured background. The object
has four attributes: position, scale, angle and opacity. In a video of class
``c`` exactly one attribute changes over time (the pair of classes of that
attribute differ only in the direction of the change); the others stay
constant. Each attribute's value in any single frame follows the same
distribution in every class:

* a changing attribute sweeps a fixed range forwards or backwards over the
  video, starting at a random phase, so one frame of it is uniform over the
  range (position: a symmetric path around a uniformly drawn centre);
* a constant attribute is drawn once from that same per-frame distribution.

So a single frame carries (almost) no information about the class, while the
direction of change across frames decides it. Videos are written as real
compressed MP4 files (OpenCV's ``mp4v`` encoder) and listed in mmaction2
``VideoDataset`` annotation files.

This is the ``basic`` preset; :func:`generate` writes any preset of
:data:`PRESETS` (the twenty-class ``hard`` one lives in
:mod:`e3d_plugin.datasets.motion_hard`) through the same writer.
"""
import json
import os
import os.path as osp
import re
import tempfile
import time

import numpy as np

CLASSES = (
    'move_left', 'move_right', 'move_up', 'move_down', 'grow', 'shrink',
    'rotate_clockwise', 'rotate_counterclockwise', 'appear', 'disappear')

# attribute changed by each class, and the sign of the change
_CHANGES = {
    'move_left': ('x', -1), 'move_right': ('x', 1),
    'move_up': ('y', -1), 'move_down': ('y', 1),
    'grow': ('scale', 1), 'shrink': ('scale', -1),
    'rotate_clockwise': ('angle', -1), 'rotate_counterclockwise': ('angle', 1),
    'appear': ('opacity', 1), 'disappear': ('opacity', -1),
}
SCALE_RANGE = (0.28, 0.5)  # object side as a fraction of the frame
OPACITY_RANGE = (0.3, 1.0)
ANGLE_SWEEP = 120.0  # degrees turned over a video
TRAVEL = 0.4  # fraction of the frame crossed by a moving object


class SyntheticMotionError(ValueError):
    """Arguments for the generator are not usable."""


def _texture(rng, size, cells):
    """A smooth random colour texture of ``size x size`` pixels."""
    import cv2
    small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _sprite(rng, size):
    """A textured, striped square object with a bright border."""
    sprite = _texture(rng, size, 4).astype(np.float32)
    stripes = (np.arange(size) // max(1, size // 6)) % 2
    sprite *= (0.6 + 0.4 * stripes)[:, None, None]
    sprite[:2] = sprite[-2:] = sprite[:, :2] = sprite[:, -2:] = 255
    return sprite


def _attributes(rng, label, frames, size):
    """Per-frame (x, y, scale, angle, opacity) arrays for one video."""
    phase = np.linspace(0.0, 1.0, frames)
    attribute, sign = _CHANGES[CLASSES[label]]
    travel = TRAVEL * size
    margin = 0.15 * size

    def position():
        # a centre uniform in the safe band and a symmetric offset: a
        # constant position draws the offset uniformly, a moving one sweeps it
        centre = rng.uniform(margin + travel / 2, size - margin - travel / 2)
        return centre, travel * (rng.uniform() - 0.5)

    def sweep(low, high, direction):
        values = low + (high - low) * phase
        return values if direction > 0 else values[::-1]

    values = {}
    for key in ('x', 'y'):
        centre, offset = position()
        if key == attribute:
            values[key] = centre + sign * travel * (phase - 0.5)
        else:
            values[key] = np.full(frames, centre + offset)
    if attribute == 'scale':
        values['scale'] = sweep(*SCALE_RANGE, sign)
    else:
        values['scale'] = np.full(frames, rng.uniform(*SCALE_RANGE))
    start = rng.uniform(0, 360)
    if attribute == 'angle':
        values['angle'] = start + sign * ANGLE_SWEEP * phase
    else:
        values['angle'] = np.full(frames, start + rng.uniform(0, ANGLE_SWEEP))
    if attribute == 'opacity':
        values['opacity'] = sweep(*OPACITY_RANGE, sign)
    else:
        values['opacity'] = np.full(frames, rng.uniform(*OPACITY_RANGE))
    return values


def render(rng, label, frames, size):
    """The frames (``T x H x W x 3`` uint8, BGR) of one video."""
    import cv2
    background = _texture(rng, size, 6).astype(np.float32) * 0.8
    side = size
    sprite = _sprite(rng, side)
    mask = np.ones((side, side), np.float32)
    values = _attributes(rng, label, frames, size)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        scale = values['scale'][t]
        matrix = cv2.getRotationMatrix2D((side / 2, side / 2),
                                         values['angle'][t], scale)
        matrix[0, 2] += values['x'][t] - side / 2
        matrix[1, 2] += values['y'][t] - side / 2
        obj = cv2.warpAffine(sprite, matrix, (size, size),
                             flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, matrix, (size, size),
                               flags=cv2.INTER_LINEAR)[..., None]
        alpha *= values['opacity'][t]
        frame = background * (1 - alpha) + obj * alpha
        frame += rng.normal(0, 4.0, frame.shape).astype(np.float32)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def check_decodes(path, frames, size):
    """Raise if decord (mmaction2's reader) cannot read ``path`` back as
    ``frames`` frames of ``size x size``.

    decord 0.6 fails on MP4 files of some frame sizes (16, 24, 48 and 72
    pixels were seen) with a size mismatch; checked on the first video so
    that no unreadable dataset is written.
    """
    try:
        import decord
    except ImportError:  # nothing to check against without mmaction2's reader
        return
    try:
        reader = decord.VideoReader(path)
        readable = len(reader) == frames and reader.get_batch(
            [0, frames - 1]).asnumpy().shape == (2, size, size, 3)
    except Exception:  # decord raises its own error types
        readable = False
    if not readable:
        raise SyntheticMotionError(
            f'size {size}: decord cannot read back {size}x{size} MP4 videos '
            'here; choose another size (e.g. 32, 40, 56 or 64)')


def write_video(path, frames, fps):
    """Encode ``frames`` (BGR) to an MP4 file; raise if no encoder works."""
    import cv2
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (width, height))
    if not writer.isOpened():
        raise SyntheticMotionError(
            f"OpenCV cannot open an MP4 ('mp4v') writer for '{path}' "
            f'({width}x{height}, {fps} fps); if its folder is writable, '
            'install opencv-python with its bundled FFmpeg')
    for frame in frames:
        writer.write(frame)
    writer.release()


#: Generator presets: name -> module holding ``CLASSES``, ``DEFAULTS`` and
#: ``render(rng, label, frames, size)``.
PRESETS = {'basic': 'e3d_plugin.datasets.synthetic_motion',
           'hard': 'e3d_plugin.datasets.motion_hard'}
#: Defaults of this (basic) preset: videos in all, frame side, frames.
DEFAULTS = dict(num_videos=1000, size=64, frames=32)
#: Largest settings :func:`generate` takes (a video is rendered whole in
#: memory; MP4 time bases stop at 65535 frames per second).
LIMITS = dict(num_videos=100000, size=1024, frames=4096, fps=1000,
              seed=2**32 - 1)
#: Most pixels of one video (frames x size x size): 64 Mi, 192 MiB of
#: uint8 BGR, e.g. 1024 frames of 256 x 256 or 64 of 1024 x 1024.
MAX_VIDEO_PIXELS = 2**26
#: The file in a dataset folder recording the settings it was written with.
MANIFEST = 'dataset.json'
#: What :func:`generate` writes in a dataset folder (videos under
#: ``videos/``, named ``<split>_<index>.mp4``).
_OWN_FILES = ('train_list.txt', 'val_list.txt', 'classes.txt', MANIFEST)
_VIDEO_NAME = re.compile(r'^(train|val)_\d{5}\.mp4$')


def preset_module(preset):
    """The module of a generator preset (see :data:`PRESETS`)."""
    import importlib
    if preset not in PRESETS:
        raise SyntheticMotionError(
            f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return importlib.import_module(PRESETS[preset])


def _check_settings(settings, classes):
    """Raise :class:`SyntheticMotionError` for a setting of the wrong type
    or out of :data:`LIMITS`."""
    for name, low in (('num_videos', 2 * len(classes)), ('size', 16),
                      ('frames', 4), ('fps', 1), ('seed', 0)):
        value = settings[name]
        if not isinstance(value, int) or isinstance(value, bool) or \
                value < low:
            raise SyntheticMotionError(
                f'{name} must be an integer >= {low}, got {value!r}')
        if value > LIMITS[name]:
            shown = str(value) if len(str(value)) <= 24 else (
                str(value)[:20] + '...')
            raise SyntheticMotionError(
                f'{name} must be at most {LIMITS[name]}, got {shown}')
    pixels = settings['frames'] * settings['size']**2
    if pixels > MAX_VIDEO_PIXELS:
        raise SyntheticMotionError(
            f"frames x size x size is {pixels} pixels per video "
            f"({settings['frames']} frames of {settings['size']}x"
            f"{settings['size']}), at most {MAX_VIDEO_PIXELS}; lower frames "
            'or size')
    fraction = settings['val_fraction']
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise SyntheticMotionError(
            f'val_fraction must be in (0, 1), got {fraction!r}')


def _splits(settings, classes):
    """``{split: count}`` of videos; ``{split: per-class counts}``."""
    num_videos = settings['num_videos']
    num_val = max(len(classes),
                  int(round(num_videos * settings['val_fraction'])))
    splits = {'train': num_videos - num_val, 'val': num_val}
    counts = {split: [len(range(label, count, len(classes)))
                      for label in range(len(classes))]
              for split, count in splits.items()}
    return splits, counts


def _read_manifest(out):
    """The settings recorded in ``out``'s manifest, ``None`` when it has
    none, ``False`` when it cannot be read."""
    path = osp.join(out, MANIFEST)
    if not osp.lexists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return False
    return recorded if isinstance(recorded, dict) else False


def _complete(out, recorded):
    """Whether the dataset in ``out`` was finished and all its listed
    videos are there."""
    if not recorded or recorded.get('complete') is not True:
        return False
    for split in ('train', 'val'):
        try:
            with open(osp.join(out, f'{split}_list.txt'),
                      encoding='utf-8') as f:
                names = [line.split()[0] for line in f if line.strip()]
        except (OSError, ValueError, IndexError):
            return False
        if not all(osp.isfile(osp.join(out, 'videos', name))
                   for name in names):
            return False
    return osp.isfile(osp.join(out, 'classes.txt'))


def _existing(out):
    """Whether ``out`` holds files of a dataset of this generator."""
    if any(osp.lexists(osp.join(out, name)) for name in _OWN_FILES):
        return True
    videos = osp.join(out, 'videos')
    return osp.isdir(videos) and bool(os.listdir(videos))


def _differences(recorded, settings):
    """``'seed 0, not 1; ...'``: recorded settings against ``settings``."""
    return '; '.join(
        f'{name} {recorded.get(name)!r}, not {value!r}'
        for name, value in settings.items() if recorded.get(name) != value)


def _remove_dataset(out):
    """Remove what :func:`generate` wrote in ``out`` (its lists, classes,
    manifest and ``videos/<split>_<index>.mp4``); other files stay."""
    for name in _OWN_FILES:
        path = osp.join(out, name)
        if osp.isfile(path) or osp.islink(path):
            os.remove(path)
    videos = osp.join(out, 'videos')
    if osp.isdir(videos):
        for name in os.listdir(videos):
            if _VIDEO_NAME.match(name):
                os.remove(osp.join(videos, name))


def _check_out(out, settings, overwrite):
    """Decide what to do with the folder ``out``, changing nothing:
    ``'done'`` when it holds this very dataset, complete; ``'replace'``
    when it holds another and ``overwrite`` is set; else ``'write'``.
    Raise :class:`SyntheticMotionError` when ``out`` cannot hold a
    dataset, or holds another dataset (or one of unknown settings) and
    ``overwrite`` is not set."""
    from ..launch import LaunchError, check_output_path
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise SyntheticMotionError('out must be a folder name, got '
                                   f'{out!r}')
    out = os.fspath(out)
    try:
        check_output_path(out, 'out', folder=True)
    except LaunchError as e:
        raise SyntheticMotionError(str(e)) from None
    if not osp.isdir(out):
        return 'write'
    for name in _OWN_FILES + ('videos', ):
        path = osp.join(out, name)
        if osp.lexists(path) and not (osp.isdir(path) if name == 'videos'
                                      else osp.isfile(path)):
            raise SyntheticMotionError(
                f"out '{out}' holds '{name}', which is not a "
                f"{'folder' if name == 'videos' else 'file'}; choose "
                'another folder')
    if not _existing(out):
        if os.listdir(out):
            raise SyntheticMotionError(
                f"out '{out}' is a folder of other files, not a dataset of "
                'this generator; choose a new or empty folder')
        return 'write'
    recorded = _read_manifest(out)
    if recorded:
        differences = _differences(recorded, settings)
        if not differences:
            return 'done' if _complete(out, recorded) else 'write'
        what = f'a dataset of other settings ({differences})'
    elif recorded is False:
        what = f'a dataset whose {MANIFEST} cannot be read'
    else:
        what = (f'a dataset without {MANIFEST} (an older generator\'s), '
                'whose settings are unknown')
    if not overwrite:
        raise SyntheticMotionError(
            f"out '{out}' holds {what}; give overwrite=True (--overwrite) to "
            'replace it, or another folder')
    return 'replace'


def _write_manifest(out, settings, complete):
    with open(osp.join(out, MANIFEST), 'w', encoding='utf-8') as f:
        json.dump(dict(settings, complete=complete), f, indent=1)
        f.write('\n')


def generate(out, num_videos=None, size=None, frames=None, seed=0, fps=16,
             val_fraction=0.2, progress=None, preset='basic',
             overwrite=False):
    """Write the dataset of ``preset`` under ``out``; return a summary dict.

    ``num_videos``, ``size`` and ``frames`` left as ``None`` take the
    preset's ``DEFAULTS``; all settings are bounded by :data:`LIMITS` and
    :data:`MAX_VIDEO_PIXELS`. Layout: ``out/videos/<split>_<index>.mp4``,
    ``out/train_list.txt`` and ``out/val_list.txt`` (``<file> <label>``
    lines for mmaction2's ``VideoDataset`` with
    ``data_prefix=dict(video=out/videos)``), ``out/classes.txt`` and
    ``out/dataset.json`` (the settings, and whether the dataset was
    finished). Classes are balanced in both splits; the same seed gives
    the same videos.

    An existing dataset in ``out`` is left alone: the same settings, when
    complete, write nothing (the summary's ``written`` is False; an
    unfinished one is finished); other settings, or a dataset without a
    readable ``dataset.json``, raise :class:`SyntheticMotionError` unless
    ``overwrite`` (then its files are removed first: the lists, classes,
    manifest and generated videos, nothing else). A folder holding other
    files is refused. Everything is checked before the first file is
    written; the first video is checked to decode before the old dataset
    is removed.
    """
    module = preset_module(preset)
    settings = dict(preset=preset, **module.DEFAULTS)
    for name, value in (('num_videos', num_videos), ('size', size),
                        ('frames', frames)):
        if value is not None:
            settings[name] = value
    settings.update(seed=seed, fps=fps, val_fraction=val_fraction)
    classes = module.CLASSES
    _check_settings(settings, classes)
    num_videos, size, frames = (settings['num_videos'], settings['size'],
                                settings['frames'])
    splits, counts = _splits(settings, classes)
    summary = dict(
        out=os.fspath(out) if isinstance(out, os.PathLike) else out,
        preset=preset,
        videos=osp.join(out, 'videos'),
        train_list=osp.join(out, 'train_list.txt'),
        val_list=osp.join(out, 'val_list.txt'),
        classes=list(classes),
        counts=counts,
        num_videos=num_videos,
        size=size,
        frames=frames,
        seed=seed)
    start = time.time()
    action = _check_out(out, settings, overwrite)
    if action == 'done':
        return dict(summary, written=False, elapsed_s=0.0)
    with tempfile.TemporaryDirectory() as folder:
        # the first video must decode before anything in out changes
        probe = osp.join(folder, 'probe.mp4')
        first = module.render(np.random.default_rng([seed, 0, 0]), 0,
                              frames, size)
        write_video(probe, first, fps)
        check_decodes(probe, frames, size)
    if action == 'replace':
        _remove_dataset(out)
    video_dir = osp.join(out, 'videos')
    try:
        os.makedirs(video_dir, exist_ok=True)
    except OSError as e:
        raise SyntheticMotionError(
            f"cannot write to '{out}': {e.strerror or e}") from None
    _write_manifest(out, settings, complete=False)
    done = 0
    for split_index, (split, count) in enumerate(splits.items()):
        lines = []
        for index in range(count):
            label = index % len(classes)
            rng = np.random.default_rng([seed, split_index, index])
            name = f'{split}_{index:05d}.mp4'
            write_video(osp.join(video_dir, name),
                        module.render(rng, label, frames, size), fps)
            lines.append(f'{name} {label}')
            done += 1
            if progress is not None:
                progress(done, num_videos)
        with open(osp.join(out, f'{split}_list.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(out, 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')
    _write_manifest(out, settings, complete=True)
    return dict(summary, written=True,
                elapsed_s=round(time.time() - start, 2))


def frame_features(frames, step=4):
    """Downsampled grey pixels of a frame sequence, flattened per frame."""
    grey = frames.astype(np.float32).mean(axis=-1)
    return grey[:, ::step, ::step].reshape(len(frames), -1) / 255.0


def _ridge_accuracy(train_x, train_y, test_x, test_y, classes, alpha=1.0):
    """Accuracy of a one-vs-all ridge classifier (closed form)."""
    mean = train_x.mean(0)
    a = train_x - mean
    targets = np.eye(classes)[train_y]
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]),
                              a.T @ targets)
    pred = ((test_x - mean) @ weights).argmax(1)
    return float((pred == test_y).mean())


def probe_single_vs_multi_frame(num_videos=400, size=32, frames=16, seed=0,
                                preset='basic'):
    """Linear-probe accuracies from one frame vs from the whole clip.

    Renders videos of ``preset`` in memory (no encoding) and fits ridge
    classifiers on (a) the pixels of one random frame and (b) the pixels of
    the first and last frames and their difference. Returns
    ``(single, multi)`` accuracy on held-out videos; chance is one over the
    preset's number of classes.
    """
    module = preset_module(preset)
    classes = len(module.CLASSES)
    rng = np.random.default_rng(seed)
    single, multi, labels = [], [], []
    for index in range(num_videos):
        label = index % classes
        clip = frame_features(
            module.render(np.random.default_rng([seed, 7, index]), label,
                          frames, size))
        single.append(clip[rng.integers(frames)])
        multi.append(np.concatenate([clip[0], clip[-1], clip[-1] - clip[0]]))
        labels.append(label)
    labels = np.array(labels)
    cut = int(num_videos * 0.75)
    results = []
    for x in (np.array(single), np.array(multi)):
        results.append(
            _ridge_accuracy(x[:cut], labels[:cut], x[cut:], labels[cut:],
                            classes, alpha=10.0))
    return tuple(results)


def pixel_statistics(num_videos=400, size=32, frames=16, seed=0):
    """Per-class mean and spread of single-frame statistics (for checks)."""
    stats = np.zeros((len(CLASSES), 2))
    counts = np.zeros(len(CLASSES))
    for index in range(num_videos):
        label = index % len(CLASSES)
        clip = render(np.random.default_rng([seed, 9, index]), label, frames,
                      size).astype(np.float32)
        stats[label] += (clip.mean(), clip.std())
        counts[label] += 1
    return stats / counts[:, None]


__all__ = ['CLASSES', 'PRESETS', 'DEFAULTS', 'LIMITS', 'MAX_VIDEO_PIXELS',
           'MANIFEST', 'generate', 'preset_module',
           'render', 'write_video', 'check_decodes',
           'probe_single_vs_multi_frame', 'pixel_statistics',
           'SyntheticMotionError']
