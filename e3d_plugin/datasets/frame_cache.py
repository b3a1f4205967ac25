"""Decode each video once: ``CachedDecordInit``.

A study trains the same videos dozens of times, and decoding a clip of the
hard motion benchmark costs about 7.6 ms of CPU, 120 ms a batch of 16, close
to the training step itself on one core. ``CachedDecordInit`` stands in for
mmaction2's ``DecordInit``: the first time a video is asked for it decodes
every frame with decord and writes them to ``cache_dir`` as one ``.npy``
file; later (in any process) it maps that file. The reader it hands on
answers ``get_batch`` / ``__len__`` / ``get_avg_fps`` as decord's does, so
the pipeline's ``DecordDecode`` and every transform after it run unchanged
and see the same pixels (tested against decord).

A cache entry is keyed by the video's absolute path, size and modification
time, so a regenerated video is decoded again. Entries are written to a
temporary file and renamed: processes that decode the same video at once
each write a whole file, and the last rename wins.

    dict(type='CachedDecordInit', cache_dir='work_dirs/study/frame_cache')
"""
import hashlib
import json
import os
import os.path as osp

import numpy as np
from mmaction.datasets.transforms import DecordInit
from mmaction.registry import TRANSFORMS

from ..fileio import atomic_write


class _Batch:
    """What decord's ``get_batch`` returns: frames behind ``asnumpy``."""

    def __init__(self, frames):
        self._frames = frames

    def asnumpy(self):
        return self._frames


class CachedVideo:
    """A decoded video with the part of decord's ``VideoReader`` interface
    that mmaction2's decord transforms use."""

    def __init__(self, frames, fps):
        self.frames = frames
        self.fps = fps
        self._position = 0

    def __len__(self):
        return len(self.frames)

    def get_avg_fps(self):
        return self.fps

    def get_batch(self, indices):
        return _Batch(np.ascontiguousarray(self.frames[np.asarray(indices)]))

    def seek(self, index):
        self._position = int(index)

    def next(self):
        frame = _Batch(np.array(self.frames[self._position]))
        self._position += 1
        return frame


def cache_key(filename):
    """The cache entry name of ``filename``: a hash of its absolute path,
    size and modification time."""
    stat = os.stat(filename)
    text = f'{osp.abspath(filename)}\0{stat.st_size}\0{stat.st_mtime_ns}'
    return hashlib.sha1(text.encode()).hexdigest()


@TRANSFORMS.register_module()
class CachedDecordInit(DecordInit):
    """``DecordInit`` that decodes every video once into ``cache_dir`` and
    maps the decoded frames afterwards (see the module docstring).

    Args:
        cache_dir (str): Folder of the decoded frames (created when
            missing). About ``frames x height x width x 3`` bytes a video.
        **kwargs: The arguments of ``DecordInit``.
    """

    def __init__(self, cache_dir, **kwargs):
        if not isinstance(cache_dir, (str, os.PathLike)) or not str(
                cache_dir):
            raise TypeError('CachedDecordInit: cache_dir must be a folder '
                            f'path, got {cache_dir!r}')
        super().__init__(**kwargs)
        self.cache_dir = str(cache_dir)

    def _filename(self, filename):
        if osp.splitext(filename)[0] == filename:
            filename = filename + '.mp4'
        return filename

    def _decode(self, filename):
        reader = self._get_video_reader(filename)
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        return np.ascontiguousarray(frames), float(reader.get_avg_fps())

    def load(self, filename):
        """The :class:`CachedVideo` of ``filename`` (decoded and cached on
        the first call)."""
        filename = self._filename(filename)
        key = cache_key(filename)
        frames_path = osp.join(self.cache_dir, key + '.npy')
        info_path = osp.join(self.cache_dir, key + '.json')
        if osp.isfile(frames_path) and osp.isfile(info_path):
            try:
                with open(info_path) as f:
                    fps = float(json.load(f)['fps'])
                return CachedVideo(np.load(frames_path, mmap_mode='r'), fps)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged entry: decode again and replace it
        frames, fps = self._decode(filename)
        os.makedirs(self.cache_dir, exist_ok=True)
        atomic_write(info_path, lambda f: json.dump(
            dict(fps=fps, source=osp.abspath(filename)), f))
        atomic_write(frames_path, lambda f: np.save(f, frames), mode='wb')
        return CachedVideo(frames, fps)

    def transform(self, results):
        """Set ``video_reader``, ``total_frames`` and ``avg_fps``."""
        video = self.load(results['filename'])
        results['total_frames'] = len(video)
        results['video_reader'] = video
        results['avg_fps'] = video.get_avg_fps()
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(cache_dir={self.cache_dir!r}, '
                f'io_backend={self.io_backend}, '
                f'num_threads={self.num_threads})')


def use_frame_cache(pipeline, cache_dir):
    """``pipeline`` (a list of transform dicts) with every ``DecordInit``
    replaced by ``CachedDecordInit`` into ``cache_dir``; returns the new
    list and how many were replaced."""
    out, replaced = [], 0
    for step in pipeline:
        step = dict(step)
        kind = step.get('type')
        if isinstance(kind, str) and kind.split('.')[-1] == 'DecordInit':
            step['type'] = 'CachedDecordInit'
            step['cache_dir'] = str(cache_dir)
            replaced += 1
        out.append(step)
    return out, replaced


__all__ = ['CachedDecordInit', 'CachedVideo', 'cache_key', 'use_frame_cache']
