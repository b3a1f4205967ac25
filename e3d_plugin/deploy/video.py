"""Decode a video into the frames a config's model expects.

Frames are taken every ``frame_interval``-th (the config's sampling step)
and go through the spatial transforms of the config's validation pipeline
(its resize and centre crop), decoded by mmaction2's own ``DecordInit`` /
``DecordDecode``; the result is raw pixels ``(1, C, T, H, W)``, as the
pipeline's ``FormatShape`` gives them to the data preprocessor.
"""
import contextlib
import os
import sys

import numpy as np
import torch

from .errors import DeployError, check_positive_int

# Pipeline steps that sample, decode, format or pack: everything else in a
# validation pipeline is a spatial transform applied to each frame.
_NOT_SPATIAL = ('Init', 'Sample', 'Decode', 'FormatShape', 'Pack')


def spatial_steps(cfg):
    """The spatial transforms (resize, crop, ...) of the config's
    validation (or test) pipeline, as config dicts."""
    for split in ('val', 'test'):
        pipeline = ((cfg.get(f'{split}_dataloader') or {}).get('dataset')
                    or {}).get('pipeline')
        if pipeline:
            steps = []
            for step in pipeline:
                if any(word in step['type'] for word in _NOT_SPATIAL):
                    continue
                if step['type'] in ('ThreeCrop', 'TenCrop'):
                    # one view per frame: the centre crop of the same size
                    step = dict(type='CenterCrop',
                                crop_size=step['crop_size'])
                steps.append(dict(step))
            return steps
    raise DeployError(
        'the config has no val_dataloader / test_dataloader pipeline to '
        'take the resize and crop from')


@contextlib.contextmanager
def native_stderr_muted():
    """Silence what native libraries (decord, FFmpeg) print on the
    process's stderr while a video is opened or decoded: a failure is
    reported as one line of its own, not after their log lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 to silence
        yield
        return
    try:
        with open(os.devnull, 'wb') as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decode_error(path, error):
    text = ' '.join(str(error).split())
    return DeployError(
        f"cannot decode video '{path}' ({type(error).__name__}: {text})")


class VideoFrames:
    """The frames of the video at ``path`` as raw pixels, every
    ``frame_interval``-th frame from the first (at most ``max_frames`` of
    them), decoded a block at a time: a long video is never held whole.

    ``len()`` is the number of frames taken. :meth:`chunks` yields them as
    ``(start, frames)``, ``frames`` of shape ``(1, 3, t, H, W)`` (float32,
    resized and cropped as the config's validation pipeline does).
    """

    def __init__(self, cfg, path, frame_interval=1, max_frames=None):
        from mmaction.registry import TRANSFORMS
        from mmengine.registry import init_default_scope

        from .export import check_input_file
        init_default_scope(cfg.get('default_scope', 'mmaction'))
        check_input_file(path, 'video')
        for name, value in (('frame_interval', frame_interval),
                            ('max_frames', max_frames)):
            if value is not None:
                check_positive_int(name, value)
        self.path = path
        self.frame_interval = frame_interval
        results = dict(filename=path, start_index=0, modality='RGB')
        try:
            with native_stderr_muted():
                results = TRANSFORMS.build(dict(type='DecordInit'))(results)
        except Exception as e:  # decord raises its own error kinds
            raise _decode_error(path, e) from None
        self._reader = results['video_reader']
        total = int(results['total_frames'])
        # an interval past the end takes the first frame alone
        indices = np.arange(0, total,
                            min(frame_interval, max(total, 1)))
        if max_frames is not None:
            indices = indices[:max_frames]
        if not len(indices):
            raise DeployError(f"video '{path}' has no frames")
        self.indices = indices
        steps = [dict(type='DecordDecode')] + spatial_steps(cfg) + [
            dict(type='FormatShape', input_format='NCTHW')
        ]
        try:
            self._steps = [TRANSFORMS.build(step) for step in steps]
        except Exception as e:  # an unknown or misconfigured transform
            raise DeployError(
                "cannot build the config's validation transforms "
                f"({type(e).__name__}: {' '.join(str(e).split())})") from None

    def __len__(self):
        return len(self.indices)

    def decode(self, start, stop):
        """Frames ``start`` to ``stop`` (of those taken), ``(1, 3, t, H,
        W)``."""
        indices = self.indices[start:stop]
        if not len(indices):
            raise DeployError(
                f'no frames {start}..{stop} in the {len(self)} taken from '
                f"'{self.path}'")
        # DecordDecode drops the reader from its results: hand it each time
        results = dict(video_reader=self._reader, frame_inds=indices,
                       clip_len=len(indices), num_clips=1,
                       frame_interval=self.frame_interval,
                       filename=self.path, start_index=0, modality='RGB',
                       total_frames=len(self._reader))
        try:
            with native_stderr_muted():
                for step in self._steps:
                    results = step(results)
        except Exception as e:  # decode or transform failure: name the file
            raise _decode_error(self.path, e) from None
        return torch.from_numpy(np.ascontiguousarray(
            results['imgs'][:1])).float()

    def chunks(self, size, block=None):
        """Yield ``(start, frames)`` for consecutive chunks of ``size``
        frames (the last may be shorter); decode ``block`` frames at a
        time (default: ``size``, at least 16), so that short chunks do not
        each cost a seek."""
        check_positive_int('chunk', size)
        block = max(size, 16) if block is None else block
        block = -(-block // size) * size  # whole chunks per block
        for first in range(0, len(self), block):
            frames = self.decode(first, first + block)
            for offset in range(0, frames.shape[2], size):
                yield first + offset, frames[:, :, offset:offset + size]


def read_video(cfg, path, frame_interval=1, max_frames=None):
    """Frames of the video at ``path`` as raw pixels ``(1, 3, T, H, W)``
    (float32), every ``frame_interval``-th frame from the first, at most
    ``max_frames`` of them, all at once (:class:`VideoFrames` decodes a
    long video in parts)."""
    video = VideoFrames(cfg, path, frame_interval, max_frames)
    return video.decode(0, len(video))


__all__ = ['VideoFrames', 'read_video', 'spatial_steps']
