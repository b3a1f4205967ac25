"""CachedDecordInit: each video decoded once, the same pixels as decord."""
import copy
import os.path as osp

import numpy as np
import pytest

from e3d_plugin.datasets import frame_cache
from e3d_plugin.datasets.frame_cache import (CachedDecordInit, cache_key,
                                             use_frame_cache)
from e3d_plugin.datasets.synthetic_motion import generate


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    out = tmp_path_factory.mktemp('motion')
    generate(str(out), num_videos=20, size=32, frames=16)
    return out


def pipeline(cache_dir=None):
    steps = [dict(type='DecordInit'),
             dict(type='SampleFrames', clip_len=8, frame_interval=2,
                  num_clips=1),
             dict(type='DecordDecode'),
             dict(type='FormatShape', input_format='NCTHW'),
             dict(type='PackActionInputs')]
    if cache_dir is None:
        return steps
    cached, replaced = use_frame_cache(steps, cache_dir)
    assert replaced == 1 and cached[0]['type'] == 'CachedDecordInit'
    assert steps[0] == dict(type='DecordInit')  # the input is left alone
    return cached


def dataset(videos, steps):
    from mmaction.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    return DATASETS.build(dict(
        type='VideoDataset', ann_file=str(videos / 'train_list.txt'),
        data_prefix=dict(video=str(videos / 'videos')),
        pipeline=copy.deepcopy(steps)))


def test_same_clips_as_decord_and_decoded_once(videos, tmp_path,
                                               monkeypatch):
    plain = dataset(videos, pipeline())
    cached = dataset(videos, pipeline(str(tmp_path / 'cache')))
    decoded = []
    original = CachedDecordInit._decode
    monkeypatch.setattr(CachedDecordInit, '_decode', lambda self, f: (
        decoded.append(f), original(self, f))[1])
    for epoch in range(2):
        for index in range(len(plain)):
            np.random.seed(100 * epoch + index)
            a = plain[index]
            np.random.seed(100 * epoch + index)
            b = cached[index]
            assert a['inputs'].shape == (1, 3, 8, 32, 32)
            assert np.array_equal(a['inputs'].numpy(), b['inputs'].numpy())
    # every video once, in the first epoch only
    assert len(decoded) == len(plain) == len(set(decoded))
    entries = sorted(p.name for p in (tmp_path / 'cache').iterdir())
    assert len(entries) == 2 * len(plain)
    assert all(name.endswith(('.npy', '.json')) for name in entries)
    # a new process (a fresh transform) maps the files, decodes nothing
    fresh = CachedDecordInit(cache_dir=str(tmp_path / 'cache'))
    video = fresh.load(str(videos / 'videos' / 'train_00000.mp4'))
    assert isinstance(video.frames, np.memmap) and len(video) == 16
    assert len(decoded) == len(plain)


def test_changed_or_damaged_video_entry_is_decoded_again(videos, tmp_path):
    import shutil
    video = tmp_path / 'v.mp4'
    shutil.copy(videos / 'videos' / 'train_00001.mp4', video)
    init = CachedDecordInit(cache_dir=str(tmp_path / 'cache'))
    first = np.array(init.load(str(video)).frames)
    key = cache_key(str(video))
    npy = tmp_path / 'cache' / f'{key}.npy'
    npy.write_bytes(b'not an array')  # a damaged entry
    again = init.load(str(video))
    assert np.array_equal(np.array(again.frames), first)
    assert np.array_equal(np.load(npy), first)  # replaced
    # another video under the same name: another key
    shutil.copy(videos / 'videos' / 'train_00002.mp4', video)
    assert cache_key(str(video)) != key
    other = init.load(str(video))
    assert not np.array_equal(np.array(other.frames), first)


def test_reader_interface(videos, tmp_path):
    init = CachedDecordInit(cache_dir=str(tmp_path / 'c'))
    results = init.transform(
        dict(filename=str(videos / 'videos' / 'train_00003')))  # no .mp4
    video = results['video_reader']
    assert results['total_frames'] == 16 == len(video)
    assert results['avg_fps'] == video.get_avg_fps() > 0
    batch = video.get_batch([0, 5, 5]).asnumpy()
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.uint8
    assert np.array_equal(batch[1], batch[2])
    video.seek(5)
    assert np.array_equal(video.next().asnumpy(), batch[1])
    assert 'cache_dir' in repr(init) and osp.isdir(str(tmp_path / 'c'))
    with pytest.raises(TypeError, match='cache_dir must be a folder path'):
        CachedDecordInit(cache_dir='')
    assert frame_cache.__all__
