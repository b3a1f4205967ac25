"""The clip (frames, height, width) a config's data pipeline makes."""
from .errors import LaunchError


def _positive_int(where, value):
    """``value`` if it is an integer >= 1 (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LaunchError(
            f'{where} must be a positive integer, got {value!r}')
    return value


def _crop_pair(where, value):
    """``(height, width)`` of an mmaction2 crop size: an int, or a
    ``(w, h)`` pair as mmaction2 takes it."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        width, height = (_positive_int(where, v) for v in value)
        return height, width
    if isinstance(value, (list, tuple)):
        raise LaunchError(f'{where} must be an int or a (w, h) pair, got '
                         f'{value!r}')
    side = _positive_int(where, value)
    return side, side


def pipeline_clip(where, pipeline):
    """``(frames, size, how)`` a pipeline gives: ``size`` is ``(h, w)``,
    ``how`` is ``'exact'``, a note why it is approximate, or None (the
    pipeline leaves the size to the video)."""
    frames = size = how = None
    for index, step in enumerate(pipeline):
        if not isinstance(step, dict):
            continue  # a transform object: nothing to read
        at = f'{where}.{index}'
        kind = str(step.get('type', '')).split('.')[-1]
        if frames is None and step.get('clip_len') is not None:
            frames = _positive_int(f'{at}.clip_len', step['clip_len'])
        if kind in ('CenterCrop', 'ThreeCrop', 'TenCrop'):
            size, how = _crop_pair(f'{at}.crop_size',
                                   step.get('crop_size')), 'exact'
        elif kind == 'RandomCrop':
            size, how = _crop_pair(f'{at}.size', step.get('size')), 'exact'
        elif kind in ('RandomResizedCrop', 'MultiScaleCrop'):
            size = how = None  # a random crop: a later Resize fixes the size
        elif kind == 'Resize':
            scale = step.get('scale')
            if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool)
                    for v in scale):
                if not step.get('keep_ratio', True):
                    size, how = _crop_pair(f'{at}.scale', scale), 'exact'
                else:
                    side = max(scale) if -1 in scale else min(scale)
                    side = _positive_int(f'{at}.scale', side)
                    size = (side, side)
                    how = (f'{at} resizes the short side to {side} and keeps '
                           'the aspect ratio, and no crop follows: analyzed '
                           f'as {side}x{side} (the long side depends on the '
                           'video)')
            else:
                size = how = None  # a scale factor: the video decides
    return frames, size, how


def dataset_configs(dataset):
    """The dataset configs a (possibly wrapped) dataset config holds."""
    if not isinstance(dataset, dict):
        return []
    if isinstance(dataset.get('dataset'), dict):  # RepeatDataset & co.
        return dataset_configs(dataset['dataset'])
    if isinstance(dataset.get('datasets'), (list, tuple)):  # ConcatDataset
        return [config for item in dataset['datasets']
                for config in dataset_configs(item)]
    return [dataset]


def config_clip(cfg):
    """``(frames, (h, w), notes)`` of a config's clip, as its validation
    pipeline makes it (else the test one, else the training one).

    ``notes`` maps ``'frames'`` / ``'image_size'`` to why a value is taken
    elsewhere, approximated or a default: a pipeline without a frame sampler
    takes the ``clip_len`` of another split's (else 16 frames); one that
    resizes the short side without cropping is analyzed as a square of that
    side; one that fixes no size at all as 224 x 224.
    """
    found = []  # (split, frames, size, how), in the order val, test, train
    for split in ('val', 'test', 'train'):
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        for dataset in dataset_configs(loader.get('dataset')):
            pipeline = dataset.get('pipeline')
            if isinstance(pipeline, (list, tuple)):
                found.append((split, *pipeline_clip(
                    f'{split}_dataloader.dataset.pipeline', pipeline)))
                break
    if not found:
        return 16, (224, 224), dict(
            frames='the config has no data pipeline: analyzed 16 frames '
            '(set --frames)',
            image_size='the config has no data pipeline: analyzed 224x224 '
            '(set --image-size)')
    split, frames, size, how = found[0]
    notes = {}
    if frames is None:
        other = next(((s, f) for s, f, _, _ in found[1:] if f is not None),
                     None)
        if other:
            frames = other[1]
            notes['frames'] = (
                f'the {split} pipeline has no frame sampler with clip_len: '
                f'analyzed {frames} frames, the clip_len of the {other[0]} '
                'pipeline')
        else:
            frames = 16
            notes['frames'] = ('no frame sampler with clip_len in the '
                               "config's pipelines: analyzed 16 frames (set "
                               '--frames)')
    if size is None:
        size = (224, 224)
        notes['image_size'] = (
            f'the {split} pipeline neither crops nor resizes to a fixed '
            'size: analyzed 224x224 (set --image-size)')
    elif how != 'exact':
        notes['image_size'] = how
    return frames, size, notes
